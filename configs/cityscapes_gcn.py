"""GCN on Cityscapes with mmsegmentation's CNN recipe (configs/cnn_recipes.py). GCN, Large Kernel
Matters (Peng et al. 2017): ResNet + global convolution (k = 15) and boundary refinement blocks;
no auxiliary head. The paper trains with its own crops and schedule; the common recipe here
makes it comparable with the other CNNs.

--config=configs/cityscapes_gcn.py:<backbone>, <backbone> one of {r50: r50, r101: r101, r152:
r152, r152v1: r152v1} (argument: model variant); r152v1 is the paper's ResNet-152 (torchvision
stem), the others the v1c deep stem.
"""

import ml_collections

from configs import cnn_recipes

BACKBONES = {'r50': 'r50', 'r101': 'r101', 'r152': 'r152', 'r152v1': 'r152v1'}


def get_config(arguments: str = 'r50') -> ml_collections.ConfigDict:
  variant = cnn_recipes.variant_of('configs/cityscapes_gcn.py', arguments, BACKBONES)
  return cnn_recipes.mmseg_cnn('cityscapes', 'gcn', variant)
