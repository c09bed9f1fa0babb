"""SegNeXt on ADE20K, mmsegmentation's recipe (segnext_mscan-<size>_1xb16-adamw-160k_ade20k-
512x512): AdamW lr 6e-5, betas (0.9, 0.999), weight decay 0.01 (none on norm layers), decode
head lr x10; linear warm-up over 1500 steps from 1e-6 x lr, then poly (power 1) to 0 at 160k
steps; global batch 16 of 512x512 crops of (2048, 512) x [0.5, 2], cat_max_ratio 0.75, flip and
photometric distortion; cross-entropy only; whole-image test at (2048, 512) (mmseg pads the
sides to a multiple of 32, as config.eval.pad_multiple does). Drop path 0.1 (T, S, B) / 0.3
(L); decoder dropout 0.1. The published models start from ImageNet-pretrained MSCAN weights.

--config=configs/ade20k_segnext.py:<size>, <size> one of t, s, b, l.
"""

import ml_collections

from configs import common
from configs import cnn_recipes
from configs import datasets
from configs import default

DROP_PATH = {'t': 0.1, 's': 0.1, 'b': 0.1, 'l': 0.3}


def segnext_recipe(config: ml_collections.ConfigDict, size: str) -> None:
  """SegNeXt-<size> with the AdamW schedule of both datasets' recipes."""
  config.model.name = 'segnext'
  config.model.variant = size
  config.model.drop_path_rate = DROP_PATH[size]
  config.model.dropout_rate = 0.1
  config.model.aux_head = False
  cnn_recipes.adamw(config, lr=6e-5, weight_decay=0.01, no_decay_patterns=('norm',),
                    lr_multipliers=(('^decode_head/', 10.0),))
  cnn_recipes.transformer_schedule(config)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, variant=common.Choice('t', tuple(DROP_PATH)), smoke=False)
  config = default.get_config()
  datasets.ade20k(config)
  segnext_recipe(config, arg.variant)
  cnn_recipes.training_length(config, 16, 160_000, 16_000, num_workers=8)
  return common.maybe_smoke(config, arg)
