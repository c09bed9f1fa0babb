"""UPerNet on Cityscapes with mmsegmentation's CNN recipe (configs/cnn_recipes.py): mmseg's
upernet_<backbone>_4xb2-80k_cityscapes-512x1024. UPerNet (Xiao et al. 2018): ResNet (output
stride 32) + pyramid pooling and FPN fused at 1/4, auxiliary FCN head.

--config=configs/cityscapes_upernet.py:<backbone>, <backbone> one of {r50: r50, r101: r101}
(argument: model variant).
"""

import ml_collections

from configs import common
from configs import cnn_recipes

BACKBONES = {'r50': 'r50', 'r101': 'r101'}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, variant=common.Choice('r50', BACKBONES), smoke=False)
  return common.maybe_smoke(cnn_recipes.mmseg_cnn('cityscapes', 'upernet', arg.variant), arg)
