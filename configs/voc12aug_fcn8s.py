"""FCN-8s / 16s / 32s on VGG16 (Long, Shelhamer, Darrell, CVPR 2015) on Pascal VOC 2012 + SBD:
`--config=configs/voc12aug_fcn8s.py` (FCN-8s) or `:16s` / `:32s`.

The paper's optimisation (Sec. 4.3): SGD with momentum 0.9, weight decay 5e-4, a fixed learning
rate of 1e-4 with biases at twice the rate, mini-batches of 20, dropout 0.5 after fc6 and fc7,
class scores zero-initialised, upsampling initialised to bilinear. Differences: the paper fed
whole images one at a time (batch 20 by gradient accumulation) and trained the 32s -> 16s -> 8s
nets in stages; this trains the chosen net at once on 512x512 crops of the standard VOC
augmentation (configs/datasets.py), 40k steps (about 75 epochs of train_aug's 10582 images).
The paper's per-pixel loss was summed over pixels; ours is the mean over labelled pixels, hence
a learning rate per mean-loss unit rather than the Caffe nets' 1e-10 per summed pixel.
"""

import ml_collections

from configs import common
from configs import cnn_recipes
from configs import datasets
from configs import default

VARIANTS = {'8s': 'vgg16-8s', '16s': 'vgg16-16s', '32s': 'vgg16-32s'}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, variant=common.Choice('8s', VARIANTS), smoke=False)
  config = default.get_config()
  datasets.voc12aug(config)
  config.model.name = 'fcn'
  config.model.variant = arg.variant
  config.model.dropout_rate = 0.5
  config.model.drop_path_rate = 0.0
  cnn_recipes.sgd(config, lr=1e-4, momentum=0.9, weight_decay=5e-4)
  # The reference freezes the bilinear upsampling (Caffe lr_mult 0); biases learn twice as fast.
  config.optimizer.lr_multipliers = (('^decode_head/upscore', 0.0), ('/bias$', 2.0))
  cnn_recipes.constant_lr(config)
  cnn_recipes.training_length(config, 20, 40_000, 4_000, num_workers=8)
  return common.maybe_smoke(config, arg)
