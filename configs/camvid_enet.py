"""ENet (Paszke et al. 2016) on CamVid, the paper's setting: `--config=configs/camvid_enet.py`.

11 classes on full 360x480 frames (flip and photometric distortion), Adam with lr 5e-4 and
weight decay 2e-4 added to the gradient (Torch7's optim.adam), mini-batches of 10,
cross-entropy weighted by ENet's 1 / ln(1.02 + p_class) computed from the training labels and
averaged as the Torch7 code's cudnn.SpatialCrossEntropyCriterion does (divided by the labelled
pixels' weights). Differences: the paper trains the encoder first on downsampled labels and
then the whole network; this trains the whole network at once, for 30k steps (about 820 epochs
of the 367 training frames).
"""

import ml_collections

from configs import common
from configs import cnn_recipes
from configs import datasets
from configs import default


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, smoke=False)
  config = default.get_config()
  datasets.camvid(config)
  config.model.name = 'enet'
  config.model.variant = 'enet'
  config.model.dropout_rate = 0.1  # Stages 2+; stage 1 uses a tenth of it (0.01), as the paper.
  config.model.drop_path_rate = 0.0
  config.loss.class_weighting = 'enet'
  config.loss.logits = (('cross_entropy', 1.0, {'average': 'weight'}),)
  cnn_recipes.adam(config, lr=5e-4, weight_decay=2e-4)
  cnn_recipes.constant_lr(config)
  cnn_recipes.training_length(config, 10, 30_000, 3_000, num_workers=4)
  return common.maybe_smoke(config, arg)
