"""BiSeNet V2 on ADE20K. No published ADE20K recipe exists (mmsegmentation trains BiSeNet V2 on
Cityscapes only); this is its Cityscapes optimizer and schedule (SGD momentum 0.9, weight decay
5e-4, lr 0.05, linear warm-up from 0.1 x lr over 1k steps, poly (power 0.9) to 1e-4 at 160k
steps, cross-entropy with weight 1.0 on the decode and the four booster heads) on ADE20K's data
setting: global batch 16 of 512x512 crops of (2048, 512) x [0.5, 2].

--config=configs/ade20k_bisenetv2.py
"""

import ml_collections

from configs import common
from configs import cnn_recipes


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, smoke=False)
  config = cnn_recipes.mmseg_cnn('ade20k', 'bisenetv2', 'bisenetv2')
  config.loss.aux = (('cross_entropy', 1.0, {}),)
  cnn_recipes.sgd(config, lr=0.05, momentum=0.9, weight_decay=5e-4)
  cnn_recipes.poly(config, power=0.9, min_lr=1e-4)
  cnn_recipes.linear_warmup(config, steps=1000, init_factor=0.1)
  return common.maybe_smoke(config, arg)
