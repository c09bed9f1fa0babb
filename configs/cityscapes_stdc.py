"""STDC-Seg on Cityscapes, mmsegmentation's recipe (stdc<1|2>_4xb12-80k_cityscapes-512x1024):
SGD momentum 0.9, weight decay 5e-4, lr 0.01, linear warm-up from 0.1 x lr over 1k steps, then
poly (power 0.9) to 1e-4 at 80k steps; global batch 48 of 512x1024 crops of (2048, 1024) x
[0.5, 2]; OHEM cross-entropy with mmseg's definition (OHEMPixelSampler: thresh 0.7, min_kept
10000 per image, mined per GPU: 4 GPUs of 12 images; the kept pixels' loss divided by all pixels)
with weight 1.0 on the decode head and on both auxiliary heads, and the detail head's boundary
loss (config.loss.detail: BCE 1.0 + Dice 1.0); whole-image test at (2048, 1024). mmseg's best
results start from ImageNet-pretrained STDCNet weights.

--config=configs/cityscapes_stdc.py:<variant>, <variant> one of stdc1, stdc2.
"""

import ml_collections

from configs import common
from configs import cnn_recipes

VARIANTS = ('stdc1', 'stdc2')


def stdc_recipe(config: ml_collections.ConfigDict, images_per_gpu: int) -> None:
  """STDC's losses (OHEM on the decode and auxiliary heads, the detail loss) and warm-up, on
  top of mmseg_cnn's SGD and poly decay (shared with configs/ade20k_stdc.py)."""
  ohem = cnn_recipes.ohem('mmseg', min_kept=10_000, images_per_gpu=images_per_gpu)
  config.loss.logits = (ohem,)
  config.loss.aux = (ohem,)
  config.loss.detail = (('detail_bce', 1.0, {}), ('detail_dice', 1.0, {}))
  cnn_recipes.linear_warmup(config, steps=1000, init_factor=0.1)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, variant=common.Choice('stdc1', VARIANTS), smoke=False)
  config = cnn_recipes.mmseg_cnn('cityscapes', 'stdc', arg.variant)
  stdc_recipe(config, images_per_gpu=12)
  cnn_recipes.training_length(config, 48, 80_000, 8_000, num_workers=8)
  return common.maybe_smoke(config, arg)
