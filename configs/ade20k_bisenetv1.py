"""BiSeNet V1 on ADE20K. No published ADE20K recipe exists (mmsegmentation trains BiSeNet V1 on
Cityscapes and COCO-Stuff only); this is its COCO-Stuff 164k recipe
(bisenetv1_<backbone>-d32-in1k-pre_4xb4-160k_coco-stuff164k-512x512) on ADE20K's data setting:
SGD momentum 0.9, weight decay 5e-4, lr 0.005, linear warm-up from 0.1 x lr over 1k steps, then
poly (power 0.9) to 1e-4 at 160k steps; global batch 16 of 512x512 crops of (2048, 512) x
[0.5, 2]; cross-entropy with weight 1.0 on the decode head and both auxiliary heads.

--config=configs/ade20k_bisenetv1.py:<backbone>, <backbone> one of r18, r50, r101.
"""

import ml_collections

from configs import common
from configs import cnn_recipes

BACKBONES = ('r18', 'r50', 'r101')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, variant=common.Choice('r18', BACKBONES), smoke=False)
  config = cnn_recipes.mmseg_cnn('ade20k', 'bisenetv1', arg.variant)
  config.loss.aux = (('cross_entropy', 1.0, {}),)
  cnn_recipes.sgd(config, lr=0.005, momentum=0.9, weight_decay=5e-4)
  cnn_recipes.poly(config, power=0.9, min_lr=1e-4)
  cnn_recipes.linear_warmup(config, steps=1000, init_factor=0.1)
  return common.maybe_smoke(config, arg)
