"""SegNeXt on Cityscapes, the official recipe (Visual-Attention-Network/SegNeXt
`local_configs/segnext/*/segnext.*.1024x1024.city.160k.py`; mmsegmentation 1.x has no Cityscapes
config): the ADE20K recipe's AdamW and schedule (configs/ade20k_segnext.py: lr 6e-5, weight decay
0.01, none on norms, head lr x10, 1500 warm-up steps, poly power 1 to 0 at 160k steps) on
1024x1024 crops of (2048, 1024) x [0.5, 2] with a sliding-window test (1024x1024 windows, stride
768). Global batch 8 (the official configs give 4 (T, S) / 2 (B, L) images per GPU without
naming the GPU count; the paper's text was not available to check).

--config=configs/cityscapes_segnext.py:<size>, <size> one of t, s, b, l.
"""

import ml_collections

from configs import common
from configs import ade20k_segnext
from configs import cnn_recipes
from configs import datasets
from configs import default


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(
      __file__, arg, variant=common.Choice('t', tuple(ade20k_segnext.DROP_PATH)), smoke=False)
  config = default.get_config()
  datasets.cityscapes_1024x1024(config)
  ade20k_segnext.segnext_recipe(config, arg.variant)
  cnn_recipes.training_length(config, 8, 160_000, 16_000, num_workers=8)
  return common.maybe_smoke(config, arg)
