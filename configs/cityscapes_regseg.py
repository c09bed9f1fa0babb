"""RegSeg on Cityscapes, the official recipe (RolandGao/RegSeg `configs/cityscapes_1000epochs.yaml`,
train_utils.py, lr_schedulers.py): SGD momentum 0.9, weight decay 1e-4 (none on BatchNorm),
lr 0.05, linear warm-up from 0.1 x lr over 3000 steps, then poly (power 0.9) to 0; 1000 epochs
of the 2975 training images at batch 8 (371 steps each: 371k steps), trained from scratch;
random resize of the short side to [400, 1600] (of 1024: ratio 0.39..1.5625), 768x768 crops,
flip; plain cross-entropy, no auxiliary loss; whole-image test at full resolution.
Differences: the reference adds RandAugment (2 ops of magnitude 0.2) and class-uniform sampling
of half its crops (neither available here; the photometric distortion stands in for the first)
and trains in mixed precision. Its test-server model (79.5 / 78.3) is trained on train+val with
1024 crops and a bootstrapped cross-entropy.

--config=configs/cityscapes_regseg.py:<variant>, <variant> one of exp48_decoder26 (the paper's
RegSeg), exp53_decoder29 (the repository's larger model).
"""

import ml_collections

from configs import common
from configs import cnn_recipes

VARIANTS = ('exp48_decoder26', 'exp53_decoder29')


def regseg_recipe(config: ml_collections.ConfigDict) -> None:
  """RegSeg's optimizer, schedule and loss (shared with configs/ade20k_regseg.py)."""
  config.model.dropout_rate = 0.0
  config.model.aux_head = False
  config.loss.logits = (('cross_entropy', 1.0, {}),)
  cnn_recipes.sgd(config, lr=0.05, momentum=0.9, weight_decay=1e-4)
  config.optimizer.no_decay_patterns = ('/bn',)
  cnn_recipes.poly(config, power=0.9, min_lr=0.0)
  cnn_recipes.linear_warmup(config, steps=3000, init_factor=0.1)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, variant=common.Choice('exp48_decoder26', VARIANTS),
                         smoke=False)
  config = cnn_recipes.mmseg_cnn('cityscapes', 'regseg', arg.variant)
  config.augment.ratio_range = (400 / 1024, 1600 / 1024)
  config.augment.crop_size = (768, 768)
  config.augment.cat_max_ratio = 1.0
  regseg_recipe(config)
  cnn_recipes.training_length(config, 8, 371_000, 37_100, num_workers=8)
  return common.maybe_smoke(config, arg)
