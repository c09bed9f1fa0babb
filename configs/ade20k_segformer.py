"""SegFormer on ADE20K, the published recipe (Xie et al. 2021; mmsegmentation's
segformer_mit-b*_8xb2-160k_ade20k-512x512): `--config=configs/ade20k_segformer.py:b0` .. `:b5`.

AdamW lr 6e-5, betas (0.9, 0.999), weight decay 0.01 (none on norm layers and the Mix-FFN's
positional-encoding depthwise convs), decode head lr x10; linear warm-up over 1500 steps from
1e-6 x lr, then poly decay (power 1) to 0 at 160k steps; global batch 16 of 512x512 crops after a
random keep-ratio resize of (2048, 512) x [0.5, 2.0], cat_max_ratio 0.75, flip and photometric
distortion. Evaluation on the whole image after a keep-ratio resize to (2048, 512), scored at the
label's original resolution (with SegFormer's aligned resize: each side up to a multiple of 32).

Arguments (configs/common.py): variant (b0..b5, positional), smoke.
"""

import ml_collections

from configs import cnn_recipes
from configs import common
from configs import datasets
from configs import default

VARIANTS = ('b0', 'b1', 'b2', 'b3', 'b4', 'b5')


def segformer_recipe(config: ml_collections.ConfigDict, variant: str) -> None:
  """SegFormer-<variant> and its published optimisation, on any dataset setting (shared with
  configs/segformer.py)."""
  config.model.name = 'segformer'
  config.model.variant = variant
  config.model.drop_path_rate = 0.1
  config.model.dropout_rate = 0.1
  config.data.num_workers = 8
  config.train.batch_size = 16
  config.train.num_steps = 160_000
  config.train.eval_every = 16_000
  cnn_recipes.adamw(config, lr=6e-5, weight_decay=0.01, no_decay_patterns=('norm', 'dwconv'),
                    lr_multipliers=(('^decode_head/', 10.0),))
  cnn_recipes.transformer_schedule(config)
  config.eval.align_multiple = 32  # SegFormer's AlignedResize at test time.
  config.eval.batch_size = 8
  config.checkpoint.every_steps = 4000


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, variant=common.Choice('b0', VARIANTS), smoke=False)
  config = default.get_config()
  datasets.ade20k(config)  # Set --config.data.root=<path to ADEChallengeData2016>.
  segformer_recipe(config, arg.variant)
  return common.maybe_smoke(config, arg)
