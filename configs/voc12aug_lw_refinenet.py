"""Light-Weight RefineNet (Nekrasov et al. 2018) on Pascal VOC 2012 + SBD, after the authors'
training code (DrSleep/light-weight-refinenet src_v2, train/train_v2_sbd_voc.sh):
`--config=configs/voc12aug_lw_refinenet.py:<variant>`, <variant> r50 (default), r101 or r152.

The encoder starts from torchvision's ImageNet ResNet: pass the file with
--config.model.backbone_pretrained=resnet50-19c8e357.pth (the authors' VOC weights load with
--config.model.pretrained).

The code's setting: images resized so that the shorter side is 350, then by a random factor in
[0.5, 2], random 500x500 crops (padded with the ignore label), flips; ImageNet mean and std;
SGD with momentum 0.9 and weight decay 1e-5, lr 5e-3 for the decoder and 5e-4 for the encoder,
constant within a stage and halved after it; batch 6; cross-entropy over the labelled pixels;
dropout 0.5 on the encoder's last two stages. Evaluation on whole images.

Differences: the code trains two stages of 100 epochs (SBD's 5623 images, then VOC's 1464
train images, the lr halved for the second) with BatchNorm frozen (running statistics fixed);
here one stage of 100 epochs on train_aug (their union, 10582 images: 176,400 steps) at the
first stage's rates, BatchNorm training normally (frozen statistics are not available here).
"""

import ml_collections

from configs import cnn_recipes
from configs import common
from configs import datasets
from configs import default


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, variant=common.Choice('r50', ('r50', 'r101', 'r152')),
                         smoke=False)
  config = default.get_config()
  datasets.voc12aug(config)
  config.augment.resize_scale = (2048, 350)
  config.augment.ratio_range = (0.5, 2.0)
  config.augment.crop_size = (500, 500)
  config.augment.cat_max_ratio = 1.0
  config.augment.photometric = False
  config.model.name = 'lw_refinenet'
  config.model.variant = arg.variant
  config.model.dropout_rate = 0.5
  config.model.drop_path_rate = 0.0
  config.loss.logits = (('cross_entropy', 1.0, {}),)
  cnn_recipes.sgd(config, lr=5e-3, momentum=0.9, weight_decay=1e-5)
  config.optimizer.lr_multipliers = (('^backbone/', 0.1),)  # The encoder's 5e-4.
  cnn_recipes.constant_lr(config)
  cnn_recipes.training_length(config, 6, 176_400, 17_640, num_workers=8)
  return common.maybe_smoke(config, arg)
