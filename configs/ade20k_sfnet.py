"""SFNet on ADE20K. The official repository publishes no ADE20K recipe (the paper reports ADE20K
results without a script); this is its Cityscapes optimizer, schedule and loss
(configs/cityscapes_sfnet.py: SGD lr 0.01, momentum 0.9, weight decay 1e-4, poly power 1.0, OHEM
cross-entropy with thresh 0.7) on mmsegmentation's ADE20K setting: global batch 16 of 512x512
crops of (2048, 512) x [0.5, 2] for 160k steps, whole-image test at (2048, 512).

--config=configs/ade20k_sfnet.py:<backbone>, <backbone> one of r18, r50, r101.
"""

import ml_collections

from configs import common
from configs import cityscapes_sfnet
from configs import cnn_recipes


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, variant=common.Choice('r50', cityscapes_sfnet.BACKBONES),
                         smoke=False)
  config = cnn_recipes.mmseg_cnn('ade20k', 'sfnet', arg.variant)
  cityscapes_sfnet.sfnet_recipe(config)
  return common.maybe_smoke(config, arg)
