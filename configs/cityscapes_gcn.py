"""GCN on Cityscapes with mmsegmentation's CNN recipe (configs/cnn_recipes.py). GCN, Large Kernel
Matters (Peng et al. 2017): ResNet + global convolution (k = 15) and boundary refinement blocks;
no auxiliary head. The paper trains with its own crops and schedule; the common recipe here
makes it comparable with the other CNNs.

--config=configs/cityscapes_gcn.py:<backbone>, <backbone> one of {r50: r50, r101: r101, r152:
r152, r152v1: r152v1} (argument: model variant); r152v1 is the paper's ResNet-152 (torchvision
stem), the others the v1c deep stem.
"""

import ml_collections

from configs import common
from configs import cnn_recipes

BACKBONES = {'r50': 'r50', 'r101': 'r101', 'r152': 'r152', 'r152v1': 'r152v1'}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, variant=common.Choice('r50', BACKBONES), smoke=False)
  return common.maybe_smoke(cnn_recipes.mmseg_cnn('cityscapes', 'gcn', arg.variant), arg)
