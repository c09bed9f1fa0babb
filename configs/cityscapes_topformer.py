"""TopFormer on Cityscapes, the official recipe (hustvl/TopFormer
`topformer_tiny_1024x512_80k_2x8_city.py`, `topformer_base_1024x512_80k_2x8city.py`; there is no
S config): the ADE20K recipe's AdamW and schedule (configs/ade20k_topformer.py) at lr 3e-4;
global batch 8 of 512x1024 crops of (1024, 512) x [0.5, 2]; whole-image test at half resolution
(1024, 512). T trains 160k steps (its file name says 80k; it includes the 160k schedule), B 80k
with its decode head narrowed to 128 channels (config.model.overrides).

--config=configs/cityscapes_topformer.py:<size>, <size> one of t, b.
"""

import ml_collections

from configs import common
from configs import ade20k_topformer
from configs import cnn_recipes
from configs import datasets
from configs import default

STEPS = {'t': 160_000, 'b': 80_000}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, variant=common.Choice('t', tuple(STEPS)), smoke=False)
  config = default.get_config()
  datasets.cityscapes(config)
  config.augment.resize_scale = (1024, 512)
  config.eval.resize_scale = (1024, 512)
  ade20k_topformer.topformer_recipe(config, arg.variant, lr=3e-4)
  if arg.variant == 'b':
    config.model.overrides = (('channels', 128),)
  steps = STEPS[arg.variant]
  cnn_recipes.training_length(config, 8, steps, steps // 10, num_workers=8)
  return common.maybe_smoke(config, arg)
