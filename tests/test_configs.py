"""configs/datasets.py settings and configs/segformer.py:<dataset>,<size>."""

import pytest

from configs import datasets as dataset_settings
from configs import segformer
from semseg_jax.data import datasets
from semseg_jax.evaluators import inference

EXPECTED_CLASSES = {'cityscapes': 19, 'cityscapes_1024x1024': 19, 'ade20k': 150, 'voc12aug': 21,
                    'pascal_context_59': 59, 'pascal_context_60': 60, 'coco_stuff164k': 171,
                    'coco_stuff10k': 171, 'camvid': 11, 'mapillary': 65}


@pytest.mark.parametrize('setting', sorted(dataset_settings.SETTINGS))
def test_every_setting_names_a_dataset_and_a_valid_evaluation(setting):
  config = segformer.get_config(f'{setting},b0')
  names, palette = datasets.class_names_and_palette(config.data)
  assert len(names) == EXPECTED_CLASSES[setting] and palette.shape == (len(names), 3)
  inference.check_eval_config(config.eval)
  crop_h, crop_w = config.augment.crop_size
  if config.eval.mode == 'slide':
    assert tuple(config.eval.crop_size) == (crop_h, crop_w)


def test_unknown_dataset_is_named():
  with pytest.raises(ValueError, match="configs/segformer.py: dataset='kitti' is not one of"):
    segformer.get_config('kitti,b0')
