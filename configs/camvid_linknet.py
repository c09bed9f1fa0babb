"""LinkNet (Chaurasia & Culurciello 2017) on CamVid, the authors' Torch7 code's setting
(e-lab/LinkNet opts.lua, train.lua): `--config=configs/camvid_linknet.py` (ResNet-18, the
paper) or `:r34`.

11 classes, frames at 768x576, no augmentation; RMSProp (alpha 0.99, eps 1e-8) at lr 5e-4,
mini-batches of 8, no weight decay (the code's 2e-4 reaches neither the optimizer nor the
gradient), cross-entropy weighted by 1 / ln(1.02 + pixels_c / the most frequent class's pixels)
from the training labels and averaged as Torch7 does (divided by the labelled pixels'
weights). The code multiplies the rate by 1e-7 every 100 epochs, so it trains for 100 epochs:
4,600 steps of 8 of the 367 training frames here, at a constant rate. The encoder starts from
ImageNet ResNet-18 in the paper: give torchvision's resnet18 file as
`--config.model.backbone_pretrained=...` (nothing is downloaded).

Differences: the public CamVid release (SegNet's, configs/datasets.py) has 360x480 frames; the
code re-extracts 720x960 frames from the videos and shrinks them to 768x576, here the 360x480
frames are enlarged to 768x576 (the scale the network was trained at) and evaluated at their
label's size. The code trains and predicts an 'Unlabeled' class (left out of its metrics); here
those pixels are ignored. Inputs are normalised as the ImageNet weights expect (the code
subtracts a mean image only). The paper reports the 233 test frames:
`--config.data.eval_split=test`.
"""

import ml_collections

from configs import common
from configs import cnn_recipes
from configs import datasets
from configs import default

VARIANTS = ('r18', 'r34')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, variant=common.Choice('r18', VARIANTS), smoke=False)
  config = default.get_config()
  datasets.camvid(config)
  config.augment.resize_scale = (768, 576)  # 360x480 -> 576x768, the code's input size.
  config.augment.ratio_range = (1.0, 1.0)
  config.augment.crop_size = (576, 768)
  config.augment.flip_prob = 0.0
  config.augment.photometric = False
  config.eval.resize_scale = (768, 576)
  config.model.name = 'linknet'
  config.model.variant = arg.variant
  config.model.dropout_rate = 0.0
  config.model.drop_path_rate = 0.0
  config.loss.class_weighting = 'linknet'
  config.loss.logits = (('cross_entropy', 1.0, {'average': 'weight'}),)  # Torch7's mean.
  config.optimizer.name = 'rmsprop'
  config.optimizer.lr = 5e-4
  config.optimizer.rms_decay = 0.99
  config.optimizer.eps = 1e-8
  config.optimizer.momentum = 0.0
  config.optimizer.weight_decay = 0.0
  config.optimizer.no_decay_patterns = ()
  config.optimizer.lr_multipliers = ()
  cnn_recipes.constant_lr(config)
  cnn_recipes.training_length(config, 8, 4_600, 460, num_workers=4)
  return common.maybe_smoke(config, arg)
