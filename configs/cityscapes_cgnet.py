"""CGNet M3N21 (Wu et al. 2021) on Cityscapes: `--config=configs/cityscapes_cgnet.py` (the
authors' code's network and setting, wutianyiRosun/CGNet cityscapes_train.py, trained on the
train split as for the paper's validation results), `:mmseg` (mmsegmentation's
cgnet_fcn_4xb4-60k_cityscapes-680x680, the setting of its published 680x680 weights, which
`--config.model.pretrained` reads) or `:mmseg_512x1024` (cgnet_fcn_4xb8-60k_cityscapes-512x1024).

The authors' setting: 19 classes; the full 2048x1024 frames rescaled by a random factor, padded
where smaller than the crop, 680x680 random crops, random horizontal flip; a mean subtracted,
no scaling; PyTorch's Adam (betas 0.9 / 0.999, eps 1e-8, L2 weight decay 5e-4 in the gradient)
at lr 1e-3 with poly decay (power 0.9) to 0, per step; batch 16 (2 GPUs x 8) for 300 epochs of
the 2975 training images (185 full batches each: 55,500 steps), from scratch; cross-entropy
weighted per class, averaged as PyTorch's NLLLoss does (by the labelled pixels' weights).
Whole-frame evaluation at 2048x1024.

Differences from the authors' code: it draws the scale from {0.5, 0.6, ..., 2.0} (here uniform
in [0.5, 2]) and computes its class weights, 1 / ln(1.10 + p), at start from the train+val
labels (here the fixed list of mmseg's config, CLASS_WEIGHTS). Its images are read as BGR,
flipped to RGB and then have its "BGR" mean subtracted, so the red channel loses the blue mean
(73.16) and the blue the red (72.39); kept here as the code does it.

mmseg's setting: the same network with a 1x1 classifier with bias (its FCN head without convs),
Cityscapes' mean in RGB order and std 1, the same Adam at lr 1e-3 with poly decay to 1e-4 over
60k steps; cross-entropy with the same fixed class weights, averaged over all pixels (mmseg's
default); 680x680: (2048, 1024) x [0.5, 2] rescaling, 680x680 crops without a class cap, flips,
no photometric distortion, batch 16 (its metafile; the 1.x config file's name says 4 x 8);
512x1024: mmseg's Cityscapes pipeline (crops capped at 75% of one class, photometric
distortion), batch 32.
"""

import ml_collections

from configs import cnn_recipes
from configs import common
from configs import datasets
from configs import default

# mmseg's configs/_base_/models/cgnet.py class_weight (classes 0..18).
CLASS_WEIGHTS = (2.5959933, 6.7415504, 3.5354059, 9.8663225, 9.690899, 9.369352, 10.289121,
                 9.953208, 4.3097677, 9.490387, 7.674431, 9.396905, 10.347791, 6.3927646,
                 10.226669, 10.241062, 10.280587, 10.396974, 10.055647)
# The mean that the authors' code subtracts (its `bgr_mean`, applied to RGB images).
AUTHORS_MEAN = (73.15835921, 82.90891754, 72.39239876)
# mmseg's CGNet data preprocessor: RGB mean, std 1.
MMSEG_MEAN = (72.39239876, 82.90891754, 73.15835921)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg,
                         variant=common.Choice('paper', ('paper', 'mmseg', 'mmseg_512x1024')),
                         smoke=False)
  config = default.get_config()
  datasets.cityscapes(config)
  config.model.name = 'cgnet'
  config.model.variant = 'paper' if arg.variant == 'paper' else 'mmseg'
  config.model.dropout_rate = 0.0  # The code's dropout_flag is off; mmseg's head has none.
  config.model.drop_path_rate = 0.0
  config.model.aux_head = False
  config.data.std = (1.0, 1.0, 1.0)
  config.loss.class_weights = CLASS_WEIGHTS
  config.loss.aux = ()
  cnn_recipes.adam(config, lr=1e-3, weight_decay=5e-4)
  if arg.variant == 'paper':
    config.data.mean = AUTHORS_MEAN
    config.augment.crop_size = (680, 680)
    config.augment.cat_max_ratio = 1.0
    config.augment.photometric = False
    config.loss.logits = (('cross_entropy', 1.0, {'average': 'weight'}),)  # NLLLoss's mean.
    cnn_recipes.poly(config, power=0.9, min_lr=0.0)
    cnn_recipes.training_length(config, 16, 55_500, 5_550, num_workers=8)
    return common.maybe_smoke(config, arg)
  config.data.mean = MMSEG_MEAN
  config.loss.logits = (('cross_entropy', 1.0, {'average': 'all'}),)  # mmseg's default mean.
  cnn_recipes.poly(config, power=0.9, min_lr=1e-4)
  if arg.variant == 'mmseg':
    config.augment.crop_size = (680, 680)
    config.augment.cat_max_ratio = 1.0
    config.augment.photometric = False
    cnn_recipes.training_length(config, 16, 60_000, 4_000, num_workers=8)
  else:
    cnn_recipes.training_length(config, 32, 60_000, 4_000, num_workers=8)
  return common.maybe_smoke(config, arg)
