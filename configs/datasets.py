"""Each dataset's standard benchmark setting (mmsegmentation's _base_/datasets/*.py): data
source, label convention, training crop and resize, evaluation resize and mode.

`SETTINGS[name](config)` changes only the data, augment and eval fields of a config; model
configs apply one (`configs/segformer.py:cityscapes,b2`). Set the data root on the command
line: --config.data.root=/data/cityscapes.
"""

from typing import Callable

import ml_collections

Config = ml_collections.ConfigDict


def _augment(config: Config, resize_scale, crop_size, ratio_range=(0.5, 2.0),
             cat_max_ratio=0.75) -> None:
  config.augment.resize_scale = resize_scale
  config.augment.ratio_range = ratio_range
  config.augment.crop_size = crop_size
  config.augment.cat_max_ratio = cat_max_ratio
  config.augment.flip_prob = 0.5
  config.augment.photometric = True


def cityscapes(config: Config) -> Config:
  """19 classes (trainIds); 512x1024 crops of (2048, 1024) x [0.5, 2]; whole-image test at
  (2048, 1024). 2975 train / 500 val images."""
  config.data.name = 'cityscapes'
  config.data.train_split, config.data.eval_split = 'train', 'val'
  _augment(config, (2048, 1024), (512, 1024))
  config.eval.mode = 'whole'
  config.eval.resize_scale = (2048, 1024)
  return config


def cityscapes_half_frames(config: Config) -> Config:
  """Cityscapes as the real-time papers train on it (ERFNet, EDANet): whole frames resized to
  1024x512 (no random scaling, crop = the frame, no class cap, no photometric distortion),
  flips; the test frames at 1024x512 too, the logits resized to the full labels."""
  cityscapes(config)
  _augment(config, (1024, 512), (512, 1024), ratio_range=(1.0, 1.0), cat_max_ratio=1.0)
  config.augment.photometric = False
  config.eval.resize_scale = (1024, 512)
  return config


def cityscapes_1024x1024(config: Config) -> Config:
  """Cityscapes with 1024x1024 crops and sliding-window test (1024x1024 windows, stride 768),
  as the SegFormer and SegNeXt recipes use."""
  cityscapes(config)
  config.augment.crop_size = (1024, 1024)
  config.eval.mode = 'slide'
  config.eval.crop_size = (1024, 1024)
  config.eval.stride = (768, 768)
  return config


def ade20k(config: Config) -> Config:
  """150 classes (reduce_zero_label); 512x512 crops of (2048, 512) x [0.5, 2]; whole-image test
  at (2048, 512). 20210 train / 2000 val images."""
  config.data.name = 'ade20k'
  config.data.train_split, config.data.eval_split = 'train', 'val'
  _augment(config, (2048, 512), (512, 512))
  config.eval.mode = 'whole'
  config.eval.resize_scale = (2048, 512)
  return config


def voc12aug(config: Config) -> Config:
  """Pascal VOC 2012, 21 classes; trained on train_aug (10582), evaluated on val (1449);
  512x512 crops of (2048, 512) x [0.5, 2]; whole-image test at (2048, 512)."""
  config.data.name = 'voc2012'
  config.data.train_split, config.data.eval_split = 'train_aug', 'val'
  _augment(config, (2048, 512), (512, 512))
  config.eval.mode = 'whole'
  config.eval.resize_scale = (2048, 512)
  return config


def pascal_context_59(config: Config) -> Config:
  """Pascal Context, 59 classes (background ignored); 480x480 crops of (520, 520) x [0.5, 2];
  sliding-window test (480x480, stride 320) at (520, 520). 4996 train / 5104 val images."""
  config.data.name = 'pascal_context'
  config.data.variant = '59'
  config.data.train_split, config.data.eval_split = 'train', 'val'
  _augment(config, (520, 520), (480, 480))
  config.eval.mode = 'slide'
  config.eval.resize_scale = (520, 520)
  config.eval.crop_size = (480, 480)
  config.eval.stride = (320, 320)
  return config


def pascal_context_60(config: Config) -> Config:
  """Pascal Context with background as class 0 (60 classes); otherwise as pascal_context_59."""
  pascal_context_59(config)
  config.data.variant = '60'
  return config


def coco_stuff164k(config: Config) -> Config:
  """COCO-Stuff 164k, 171 classes; 512x512 crops of (2048, 512) x [0.5, 2]; whole-image test at
  (2048, 512). 118k train2017 / 5k val2017 images."""
  config.data.name = 'coco_stuff'
  config.data.variant = '164k'
  config.data.train_split, config.data.eval_split = 'train', 'val'
  _augment(config, (2048, 512), (512, 512))
  config.eval.mode = 'whole'
  config.eval.resize_scale = (2048, 512)
  return config


def coco_stuff10k(config: Config) -> Config:
  """COCO-Stuff 10k (9k train2014 / 1k test2014), otherwise as coco_stuff164k."""
  coco_stuff164k(config)
  config.data.variant = '10k'
  config.data.eval_split = 'test'
  return config


def camvid(config: Config) -> Config:
  """CamVid, 11 classes (void ignored), SegNet's setting: full 360x480 frames (no resize, no
  crop, no class-ratio check), flip and photometric distortion; test on the whole frame.
  367 train / 101 val / 233 test images."""
  config.data.name = 'camvid'
  config.data.train_split, config.data.eval_split = 'train', 'val'
  _augment(config, (), (360, 480), cat_max_ratio=1.0)
  config.eval.mode = 'whole'
  config.eval.resize_scale = ()
  return config


def mapillary(config: Config) -> Config:
  """Mapillary Vistas v1.2, 65 classes; 512x1024 crops of (2048, 1024) x [0.5, 2]; whole-image
  test at (2048, 1024). 18000 train / 2000 val images."""
  config.data.name = 'mapillary'
  config.data.train_split, config.data.eval_split = 'train', 'val'
  _augment(config, (2048, 1024), (512, 1024))
  config.eval.mode = 'whole'
  config.eval.resize_scale = (2048, 1024)
  return config


SETTINGS: dict[str, Callable[[Config], Config]] = {
    'cityscapes': cityscapes,
    'cityscapes_1024x1024': cityscapes_1024x1024,
    'cityscapes_half_frames': cityscapes_half_frames,
    'ade20k': ade20k,
    'voc12aug': voc12aug,
    'pascal_context_59': pascal_context_59,
    'pascal_context_60': pascal_context_60,
    'coco_stuff164k': coco_stuff164k,
    'coco_stuff10k': coco_stuff10k,
    'camvid': camvid,
    'mapillary': mapillary,
}
