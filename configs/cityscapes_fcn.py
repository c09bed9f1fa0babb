"""FCN on Cityscapes with mmsegmentation's CNN recipe (configs/cnn_recipes.py): mmseg's
fcn_<backbone>-d8_4xb2-80k_cityscapes-512x1024. FCN (Long et al. 2015) in mmsegmentation's
dilated form: ResNet-D8 + FCNHead (two 3x3 convs of 512, input concatenated), auxiliary FCN
head.

--config=configs/cityscapes_fcn.py:<backbone>, <backbone> one of {r50: r50-d8, r101: r101-d8}
(argument: model variant).
"""

import ml_collections

from configs import common
from configs import cnn_recipes

BACKBONES = {'r50': 'r50-d8', 'r101': 'r101-d8'}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, variant=common.Choice('r50', BACKBONES), smoke=False)
  return common.maybe_smoke(cnn_recipes.mmseg_cnn('cityscapes', 'fcn', arg.variant), arg)
