"""RefineNet (Lin et al. 2017), 4-cascaded, on Pascal VOC 2012, after the authors' MatConvNet
training demo (guosheng/refinenet main/demo_refinenet_train.m, gen_net_opts_model_type1.m):
`--config=configs/voc12aug_refinenet.py:<variant>`, <variant> r101 (default; the paper's and
refinenet-pytorch's RefineNet-101), r50 or r152.

The encoder starts from ImageNet: --config.model.backbone_pretrained=resnet101-5d3b4d8f.pth
(torchvision's, as the PyTorch port); refinenet-pytorch's converted VOC weights load with
--config.model.pretrained.

The demo's setting: random scaling by 0.7..1.3 of images whose shorter side is kept in
[450, 1100] and enlarged x1.2 for the network, 400x400 crops, flips; SGD, momentum 0.9, weight
decay 5e-4, lr 5e-4 (the encoder x0.1) held until the validation score is stable (about 70
epochs of 1000-2000 images), then 5e-5 (a second run from the cached model); batch 1;
cross-entropy over the labelled pixels; dropout 0.5 on the encoder's last two stages and before
the classifier.

Differences: random rescaling of (2048, 540) by [0.84, 1.56] stands in for the scale rules;
the demo samples crops per class, here uniformly; it uses BatchNorm's global (ImageNet)
statistics while training, here BatchNorm trains; one run of 105,000 steps (70 epochs of 1500
images) at the first lr; ImageNet's mean and std (the demo subtracts 128) to match the
torchvision encoder weights; train_aug (10582 images) instead of VOC's 1464 train images.
"""

import ml_collections

from configs import cnn_recipes
from configs import common
from configs import datasets
from configs import default


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, variant=common.Choice('r101', ('r101', 'r50', 'r152')),
                         smoke=False)
  config = default.get_config()
  datasets.voc12aug(config)
  config.augment.resize_scale = (2048, 540)
  config.augment.ratio_range = (0.84, 1.56)
  config.augment.crop_size = (400, 400)
  config.augment.cat_max_ratio = 1.0
  config.augment.photometric = False
  config.model.name = 'refinenet'
  config.model.variant = arg.variant
  config.model.dropout_rate = 0.5
  config.model.drop_path_rate = 0.0
  config.loss.logits = (('cross_entropy', 1.0, {}),)
  cnn_recipes.sgd(config, lr=5e-4, momentum=0.9, weight_decay=5e-4)
  config.optimizer.lr_multipliers = (('^backbone/', 0.1),)
  cnn_recipes.constant_lr(config)
  cnn_recipes.training_length(config, 1, 105_000, 15_000, num_workers=4)
  return common.maybe_smoke(config, arg)
