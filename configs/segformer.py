"""SegFormer on any dataset's standard setting: `--config=configs/segformer.py:<dataset>,<size>`,
e.g. `configs/segformer.py:cityscapes,b2` or `configs/segformer.py:voc12aug,b0`.

Arguments (configs/common.py): dataset (positional; default ade20k), variant (b0..b5,
positional; default b0), smoke.

<dataset> is a key of configs/datasets.SETTINGS (data, augmentation and evaluation fields);
<size> is b0..b5. The optimisation is the published ADE20K recipe of configs/ade20k_segformer.py
(AdamW 6e-5, poly, 160k steps, batch 16), except for Cityscapes, which follows the published
Cityscapes recipe (mmsegmentation's segformer_mit-b*_8xb1-160k_cityscapes-1024x1024): 1024x1024
crops, global batch 8, sliding-window test with 1024x1024 windows at stride 768. The recipes of
the other datasets are not published for SegFormer; these are a sound starting point.
"""

import ml_collections

from configs import ade20k_segformer
from configs import common
from configs import datasets
from configs import default


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, dataset=common.Choice('ade20k', datasets.SETTINGS),
                         variant=common.Choice('b0', ade20k_segformer.VARIANTS), smoke=False)
  config = default.get_config()
  if arg.dataset is datasets.cityscapes:  # SegFormer's Cityscapes recipe: 1024x1024, slide.
    datasets.cityscapes_1024x1024(config)
  else:
    arg.dataset(config)
  ade20k_segformer.segformer_recipe(config, arg.variant)
  if config.data.name == 'cityscapes':
    config.train.batch_size = 8
  return common.maybe_smoke(config, arg)
