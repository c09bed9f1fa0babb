"""STDC-Seg on ADE20K. No published ADE20K recipe exists (the paper, its code and mmseg train
STDC on Cityscapes and CamVid); this is mmsegmentation's Cityscapes recipe (SGD momentum 0.9,
weight decay 5e-4, lr 0.01, linear warm-up from 0.1 x lr over 1k steps, poly (power 0.9) to 1e-4;
OHEM cross-entropy (thresh 0.7) with weight 1.0 on the decode and both auxiliary heads, the detail
head's BCE + Dice) on ADE20K's data setting and schedule: global batch 16 of 512x512 crops of
(2048, 512) x [0.5, 2] for 160k steps (min_kept scaled to 16 images: 10000 x 16 / 12).

--config=configs/ade20k_stdc.py:<variant>, <variant> one of stdc1, stdc2.
"""

import ml_collections

from configs import cityscapes_stdc
from configs import cnn_recipes


def get_config(arguments: str = 'stdc1') -> ml_collections.ConfigDict:
  variant = cnn_recipes.variant_of('configs/ade20k_stdc.py', arguments,
                                   {name: name for name in cityscapes_stdc.VARIANTS})
  config = cnn_recipes.mmseg_cnn('ade20k', 'stdc', variant)
  cityscapes_stdc.stdc_recipe(config, min_kept=13_333)
  return config
