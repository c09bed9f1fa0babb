"""Quickstart: SegFormer-B0 trained from scratch on the built-in synthetic dataset, on CPU in a
few minutes, then evaluated on held-out synthetic images.

python -m semseg_jax.main --config=configs/quickstart.py --workdir=/tmp/quickstart

Arguments (configs/common.py): smoke.
"""

import ml_collections

from configs import common
from configs import default


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, smoke=False)
  config = default.get_config()
  config.model.variant = 'b0'
  config.model.drop_path_rate = 0.0  # Short from-scratch training: no stochastic depth.

  config.data.name = 'synthetic'
  config.data.synthetic_image_size = (64, 64)

  config.augment.resize_scale = (128, 64)  # x ratio_range: the short side becomes 48..96.
  config.augment.ratio_range = (0.75, 1.5)
  config.augment.crop_size = (64, 64)
  config.augment.photometric = False  # Colours carry no class information here anyway.

  config.train.batch_size = 16
  config.train.num_steps = 1000
  config.train.log_every = 50
  config.train.eval_every = 500

  # From scratch: far above the fine-tuning recipe's 6e-5. At 1e-3 the run needed 1,500 steps to
  # reach mIoU ~82; at 3e-3 it gets further in 1,000 (89 on an Intel Xeon), within 5 minutes on
  # 2 CPU cores.
  config.optimizer.lr = 3e-3
  config.optimizer.lr_multipliers = ()
  config.schedule.warmup_steps = 50

  config.eval.resize_scale = ()  # Synthetic images are already at the training scale.
  config.eval.batch_size = 16

  config.checkpoint.every_steps = 500
  return common.maybe_smoke(config, arg)
