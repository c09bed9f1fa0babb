"""BiSeNet V2 on Cityscapes, mmsegmentation's recipe (bisenetv2_fcn_4xb4-160k_cityscapes-
1024x1024): SGD momentum 0.9, weight decay 5e-4, lr 0.05, linear warm-up from 0.1 x lr over 1k
steps, then poly (power 0.9) to 1e-4 at 160k steps; global batch 16 of 1024x1024 crops of
(2048, 1024) x [0.5, 2]; cross-entropy with weight 1.0 on the decode head and on each of the four
booster (auxiliary) heads; whole-image test at (2048, 1024). (mmseg's "OHEM" variant of this
config never applies OHEM: it sets `models`, not `model`; its result is this recipe's.)

--config=configs/cityscapes_bisenetv2.py
"""

import ml_collections

from configs import common
from configs import cnn_recipes


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, smoke=False)
  config = cnn_recipes.mmseg_cnn('cityscapes', 'bisenetv2', 'bisenetv2')
  config.augment.crop_size = (1024, 1024)
  config.loss.aux = (('cross_entropy', 1.0, {}),)
  cnn_recipes.sgd(config, lr=0.05, momentum=0.9, weight_decay=5e-4)
  cnn_recipes.poly(config, power=0.9, min_lr=1e-4)
  cnn_recipes.linear_warmup(config, steps=1000, init_factor=0.1)
  cnn_recipes.training_length(config, 16, 160_000, 16_000, num_workers=8)
  return common.maybe_smoke(config, arg)
