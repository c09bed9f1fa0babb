"""SegNet (Badrinarayanan et al., TPAMI 2017) on CamVid, the paper's setting:
`--config=configs/camvid_segnet.py:segnet` or `:bayesian` (Bayesian SegNet, Kendall et al. 2017).

11 classes on full 360x480 frames (no crop or resize; flip and photometric distortion), SGD with
a fixed learning rate of 0.1, momentum 0.9, weight decay 5e-4, mini-batches of 12, cross-entropy
weighted by median frequency balancing computed from the training labels. The paper trains
"until the training loss converges"; 10k steps here are about 330 epochs of the 367 training
frames. Bayesian SegNet adds dropout 0.5 around the central encoder/decoder units; evaluate it
with Monte-Carlo dropout: --config.eval.mc_dropout_samples=40 (the paper's sample count).
"""

import ml_collections

from configs import common
from configs import cnn_recipes
from configs import datasets
from configs import default

VARIANTS = {'segnet': 'vgg16', 'bayesian': 'bayesian'}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, variant=common.Choice('segnet', VARIANTS), smoke=False)
  config = default.get_config()
  datasets.camvid(config)
  config.model.name = 'segnet'
  config.model.variant = arg.variant
  config.model.dropout_rate = 0.5
  config.model.drop_path_rate = 0.0
  config.loss.class_weighting = 'median_frequency'
  cnn_recipes.sgd(config, lr=0.1, momentum=0.9, weight_decay=5e-4)
  cnn_recipes.constant_lr(config)
  cnn_recipes.training_length(config, 12, 10_000, 1_000, num_workers=4)
  return common.maybe_smoke(config, arg)
