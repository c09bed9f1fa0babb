"""STDC-Seg on ADE20K. No published ADE20K recipe exists (the paper, its code and mmseg train
STDC on Cityscapes and CamVid); this is mmsegmentation's Cityscapes recipe (SGD momentum 0.9,
weight decay 5e-4, lr 0.01, linear warm-up from 0.1 x lr over 1k steps, poly (power 0.9) to 1e-4;
OHEM cross-entropy (thresh 0.7) with weight 1.0 on the decode and both auxiliary heads, the detail
head's BCE + Dice) on ADE20K's data setting and schedule: global batch 16 of 512x512 crops of
(2048, 512) x [0.5, 2] for 160k steps, OHEM mined per 4 images (mmseg's 4 GPUs x 4 images).

--config=configs/ade20k_stdc.py:<variant>, <variant> one of stdc1, stdc2.
"""

import ml_collections

from configs import common
from configs import cityscapes_stdc
from configs import cnn_recipes


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, variant=common.Choice('stdc1', cityscapes_stdc.VARIANTS),
                         smoke=False)
  config = cnn_recipes.mmseg_cnn('ade20k', 'stdc', arg.variant)
  cityscapes_stdc.stdc_recipe(config, images_per_gpu=4)
  return common.maybe_smoke(config, arg)
