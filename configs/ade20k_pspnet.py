"""PSPNet on ADE20K with mmsegmentation's CNN recipe (configs/cnn_recipes.py): mmseg's
pspnet_<backbone>-d8_4xb4-160k_ade20k-512x512. PSPNet (Zhao et al. 2017): ResNet-D8 + pyramid
pooling (bins 1, 2, 3, 6), auxiliary FCN head.

--config=configs/ade20k_pspnet.py:<backbone>, <backbone> one of {r50: r50-d8, r101: r101-d8,
mv2: mv2-d8 (mmseg's mobilenet-v2-d8_pspnet)} (argument: model variant).
"""

import ml_collections

from configs import common
from configs import cnn_recipes

BACKBONES = {'r50': 'r50-d8', 'r101': 'r101-d8', 'mv2': 'mv2-d8'}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, variant=common.Choice('r50', BACKBONES), smoke=False)
  return common.maybe_smoke(cnn_recipes.mmseg_cnn('ade20k', 'pspnet', arg.variant), arg)
