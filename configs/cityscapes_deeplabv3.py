"""DeepLabV3 on Cityscapes with mmsegmentation's CNN recipe (configs/cnn_recipes.py): mmseg's
deeplabv3_<backbone>-d8_4xb2-80k_cityscapes-512x1024. DeepLabV3 (Chen et al. 2017): ResNet-D8 +
ASPP (rates 12, 24, 36 at output stride 8; 6, 12, 18 at 16) with image pooling, auxiliary FCN
head.

--config=configs/cityscapes_deeplabv3.py:<backbone>, <backbone> one of {r50: r50-d8, r101:
r101-d8, r50-d16: r50-d16, r101-d16: r101-d16} (argument: model variant).
"""

import ml_collections

from configs import common
from configs import cnn_recipes

BACKBONES = {'r50': 'r50-d8', 'r101': 'r101-d8', 'r50-d16': 'r50-d16', 'r101-d16': 'r101-d16'}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, variant=common.Choice('r50', BACKBONES), smoke=False)
  return common.maybe_smoke(cnn_recipes.mmseg_cnn('cityscapes', 'deeplabv3', arg.variant), arg)
