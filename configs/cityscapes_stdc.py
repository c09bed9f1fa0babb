"""STDC-Seg on Cityscapes, mmsegmentation's recipe (stdc<1|2>_4xb12-80k_cityscapes-512x1024):
SGD momentum 0.9, weight decay 5e-4, lr 0.01, linear warm-up from 0.1 x lr over 1k steps, then
poly (power 0.9) to 1e-4 at 80k steps; global batch 48 of 512x1024 crops of (2048, 1024) x
[0.5, 2]; OHEM cross-entropy (thresh 0.7, min_kept 10000 per GPU on 4 GPUs: 40000 over the
global batch) with weight 1.0 on the decode head and on both auxiliary heads, and the detail
head's boundary loss (BCE 1.0 + Dice 1.0, config.loss.detail_weights); whole-image test at
(2048, 1024). mmseg's best results start from ImageNet-pretrained STDCNet weights.

--config=configs/cityscapes_stdc.py:<variant>, <variant> one of stdc1, stdc2.
"""

import ml_collections

from configs import cnn_recipes

VARIANTS = ('stdc1', 'stdc2')


def stdc_recipe(config: ml_collections.ConfigDict, min_kept: int) -> None:
  """STDC's losses (OHEM on the decode and auxiliary heads, the detail loss) and warm-up, on
  top of mmseg_cnn's SGD and poly decay (shared with configs/ade20k_stdc.py)."""
  config.loss.main = (cnn_recipes.ohem(min_kept=min_kept),)
  config.loss.aux = (cnn_recipes.ohem(min_kept=min_kept),)
  config.loss.detail_weights = (1.0, 1.0)
  cnn_recipes.linear_warmup(config, steps=1000, init_factor=0.1)


def get_config(arguments: str = 'stdc1') -> ml_collections.ConfigDict:
  variant = cnn_recipes.variant_of('configs/cityscapes_stdc.py', arguments,
                                   {name: name for name in VARIANTS})
  config = cnn_recipes.mmseg_cnn('cityscapes', 'stdc', variant)
  stdc_recipe(config, min_kept=40_000)
  cnn_recipes.training_length(config, 48, 80_000, 8_000, num_workers=8)
  return config
