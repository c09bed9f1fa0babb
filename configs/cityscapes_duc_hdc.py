"""DUC-HDC on Cityscapes with mmsegmentation's CNN recipe (configs/cnn_recipes.py). DUC-HDC (Wang
et al. 2018): ResNet with hybrid dilated convolution + dense upsampling convolution; no
auxiliary head. The paper trains with its own crops and schedule; the common recipe here makes
it comparable with the other CNNs.

--config=configs/cityscapes_duc_hdc.py:<backbone>, <backbone> one of {r50: r50-hdc, r101:
r101-hdc} (argument: model variant).
"""

import ml_collections

from configs import common
from configs import cnn_recipes

BACKBONES = {'r50': 'r50-hdc', 'r101': 'r101-hdc'}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, variant=common.Choice('r50', BACKBONES), smoke=False)
  return common.maybe_smoke(cnn_recipes.mmseg_cnn('cityscapes', 'duc_hdc', arg.variant), arg)
