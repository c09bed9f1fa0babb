"""DeconvNet (Noh et al. 2015) on Pascal VOC 2012, after the authors' first training stage
(HyeonwooNoh/DeconvNet training/001_stage_1: solver.prototxt and stage_1_train.prototxt):
`--config=configs/voc12aug_deconvnet.py`.

The authors start the encoder from ImageNet VGG16 (Caffe); semseg_jax reads no VGG files yet
(backbones/vgg.py's `torchvision_names` lists vgg16_bn's keys for a converter), so this config
trains from scratch unless --config.model.backbone_pretrained names a checkpoint of ours.

The authors' setting: images (object-centred crops prepared offline) resized to 250x250, random
224x224 crops, flips; BGR with Caffe's mean (104.008, 116.669, 122.675) subtracted, no scaling;
SGD, momentum 0.9, weight decay 5e-4, lr 0.01 x0.1 every 9,000 iterations, 20,000 iterations of
8 images x 8 accumulated (64); cross-entropy over the labelled pixels. The second stage
continues on crops around object proposals (40,000 iterations, lr x0.1 every 10,000).

Differences: whole train_aug images, resized to fit 250x250 with their aspect kept (padded
where a side falls below the crop) instead of the offline object-centred crops, one stage;
batch 64 at once; evaluation on whole images (the paper predicts per proposal and merges, and
EDeconvNet adds FCN-8s and a CRF).
"""

import ml_collections

from configs import cnn_recipes
from configs import common
from configs import datasets
from configs import default

# fc6's 7x7 kernel needs pool5 maps of 7x7 or more: inputs of at least 193x193.
SMOKE_CROP = (224, 224)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, smoke=False)
  config = default.get_config()
  datasets.voc12aug(config)
  config.data.channel_order = 'bgr'
  config.data.mean = (104.008, 116.669, 122.675)
  config.data.std = (1.0, 1.0, 1.0)
  config.augment.resize_scale = (250, 250)
  config.augment.ratio_range = (1.0, 1.0)
  config.augment.crop_size = (224, 224)
  config.augment.cat_max_ratio = 1.0
  config.augment.photometric = False
  config.model.name = 'deconvnet'
  config.model.variant = 'vgg16'
  config.model.dropout_rate = 0.0
  config.model.drop_path_rate = 0.0
  config.loss.logits = (('cross_entropy', 1.0, {}),)
  cnn_recipes.sgd(config, lr=0.01, momentum=0.9, weight_decay=5e-4)
  config.schedule.name = 'step'
  config.schedule.warmup_steps = 0
  config.schedule.step_size = 9_000
  config.schedule.step_gamma = 0.1
  cnn_recipes.training_length(config, 64, 20_000, 2_000, num_workers=8)
  return common.maybe_smoke(config, arg, SMOKE_CROP)
