"""TopFormer on ADE20K, the official recipe (hustvl/TopFormer
`local_configs/topformer/topformer_<size>_512x512_160k_2x8_ade20k.py`): AdamW, lr 3e-4 (T) /
1.2e-4 (S, B), betas (0.9, 0.999), weight decay 0.01 on every parameter (the reference's 'norm'
rule matches none of its BatchNorms, named bn), decode head lr x10; linear warm-up over 1500
steps from 1e-6 x lr, then poly (power 1) to 0 at 160k steps; global batch 16 of 512x512 crops of
(2048, 512) x [0.5, 2], cat_max_ratio 0.75, flip and photometric distortion; cross-entropy only;
whole-image test at (2048, 512), each side then resized up to a multiple of 32
(ResizeToMultiple). Drop path 0.1, decoder dropout 0.1. The published models start from
ImageNet-pretrained backbones.

--config=configs/ade20k_topformer.py:<size>, <size> one of t, s, b.
"""

import ml_collections

from configs import common
from configs import cnn_recipes
from configs import datasets
from configs import default

LEARNING_RATES = {'t': 3e-4, 's': 1.2e-4, 'b': 1.2e-4}


def topformer_recipe(config: ml_collections.ConfigDict, size: str, lr: float) -> None:
  """TopFormer-<size> with the AdamW schedule of both datasets' recipes."""
  config.model.name = 'topformer'
  config.model.variant = size
  config.model.drop_path_rate = 0.1
  config.model.dropout_rate = 0.1
  config.model.aux_head = False
  cnn_recipes.adamw(config, lr=lr, weight_decay=0.01, no_decay_patterns=(),
                    lr_multipliers=(('^decode_head/', 10.0),))
  cnn_recipes.transformer_schedule(config)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, variant=common.Choice('t', tuple(LEARNING_RATES)),
                         smoke=False)
  config = default.get_config()
  datasets.ade20k(config)
  topformer_recipe(config, arg.variant, LEARNING_RATES[arg.variant])
  config.eval.align_multiple = 32
  cnn_recipes.training_length(config, 16, 160_000, 16_000, num_workers=8)
  return common.maybe_smoke(config, arg)
