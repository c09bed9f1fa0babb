"""DeepLabV3+ on Cityscapes with mmsegmentation's CNN recipe (configs/cnn_recipes.py): mmseg's
deeplabv3plus_<backbone>-d8_4xb2-80k_cityscapes-512x1024. DeepLabV3+ (Chen et al. 2018):
ResNet-D8 (or MobileNetV2-D8) + depthwise-separable ASPP and a decoder fusing 48-channel
stride-4 features, auxiliary FCN head.

--config=configs/cityscapes_deeplabv3plus.py:<backbone>, <backbone> one of {r50: r50-d8, r101:
r101-d8, mv2: mv2-d8} (argument: model variant).
"""

import ml_collections

from configs import common
from configs import cnn_recipes

BACKBONES = {'r50': 'r50-d8', 'r101': 'r101-d8', 'mv2': 'mv2-d8'}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, variant=common.Choice('r50', BACKBONES), smoke=False)
  return common.maybe_smoke(cnn_recipes.mmseg_cnn('cityscapes', 'deeplabv3plus', arg.variant), arg)
