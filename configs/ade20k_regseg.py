"""RegSeg on ADE20K. No published ADE20K recipe exists (the paper trains on Cityscapes and
CamVid); this is its Cityscapes optimizer, schedule and loss (configs/cityscapes_regseg.py: SGD
lr 0.05, momentum 0.9, weight decay 1e-4 except BatchNorm, 3000 warm-up steps, poly power 0.9,
plain cross-entropy) on mmsegmentation's ADE20K setting: global batch 16 of 512x512 crops of
(2048, 512) x [0.5, 2] for 160k steps, whole-image test at (2048, 512).

--config=configs/ade20k_regseg.py:<variant>, <variant> one of exp48_decoder26, exp53_decoder29.
"""

import ml_collections

from configs import common
from configs import cityscapes_regseg
from configs import cnn_recipes


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(
      __file__, arg, variant=common.Choice('exp48_decoder26', cityscapes_regseg.VARIANTS),
      smoke=False)
  config = cnn_recipes.mmseg_cnn('ade20k', 'regseg', arg.variant)
  cityscapes_regseg.regseg_recipe(config)
  return common.maybe_smoke(config, arg)
