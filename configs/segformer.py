"""SegFormer on any dataset's standard setting: `--config=configs/segformer.py:<dataset>,<size>`,
e.g. `configs/segformer.py:cityscapes,b2` or `configs/segformer.py:voc12aug,b0`.

<dataset> is a key of configs/datasets.SETTINGS (data, augmentation and evaluation fields);
<size> is b0..b5. The optimisation is the published ADE20K recipe of configs/ade20k_segformer.py
(AdamW 6e-5, poly, 160k steps, batch 16), except for Cityscapes, which follows the published
Cityscapes recipe (mmsegmentation's segformer_mit-b*_8xb1-160k_cityscapes-1024x1024): 1024x1024
crops, global batch 8, sliding-window test with 1024x1024 windows at stride 768. The recipes of
the other datasets are not published for SegFormer; these are a sound starting point.
"""

import ml_collections

from configs import ade20k_segformer
from configs import datasets


def get_config(arguments: str = 'ade20k,b0') -> ml_collections.ConfigDict:
  dataset, _, variant = arguments.partition(',')
  variant = variant or 'b0'
  if dataset not in datasets.SETTINGS:
    raise ValueError(f'configs/segformer.py: unknown dataset {dataset!r}; expected one of '
                     f'{sorted(datasets.SETTINGS)} (as configs/segformer.py:<dataset>,<size>).')
  if dataset == 'cityscapes':
    dataset = 'cityscapes_1024x1024'
  config = ade20k_segformer.get_config(variant)
  datasets.SETTINGS[dataset](config)
  if dataset.startswith('cityscapes'):
    config.train.batch_size = 8
    config.eval.batch_size = 8
  return config
