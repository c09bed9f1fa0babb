"""U-Net (Ronneberger et al. 2015) on CamVid: `--config=configs/camvid_unet.py:bn` (default) or
`:paper` (no BatchNorm, as the paper).

The paper has no CamVid recipe; this keeps its optimiser (SGD with momentum 0.99, weight decay
none, a fixed learning rate) and its architecture (base width 64, four poolings, dropout 0.5 at
the end of the contracting path, same-padded convs so that the logits cover the frame) on the
SegNet CamVid setting: 11 classes, full 360x480 frames, median-frequency class weights. The
learning rate is lower than SegNet's 0.1 because of the high momentum: 0.01 with BatchNorm,
0.001 without it. 10k steps at batch 12 (about 330 epochs).
"""

import ml_collections

from configs import common
from configs import cnn_recipes
from configs import datasets
from configs import default

VARIANTS = {'bn': 'bn', 'paper': 'paper'}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, variant=common.Choice('bn', VARIANTS), smoke=False)
  config = default.get_config()
  datasets.camvid(config)
  config.model.name = 'unet'
  config.model.variant = arg.variant
  config.model.dropout_rate = 0.5
  config.model.drop_path_rate = 0.0
  config.loss.class_weighting = 'median_frequency'
  cnn_recipes.sgd(config, lr=0.01 if arg.variant == 'bn' else 0.001, momentum=0.99,
                  weight_decay=0.0)
  cnn_recipes.constant_lr(config)
  cnn_recipes.training_length(config, 12, 10_000, 1_000, num_workers=4)
  return common.maybe_smoke(config, arg)
