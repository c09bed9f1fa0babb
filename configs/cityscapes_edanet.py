"""EDANet (Lo et al. 2019) on Cityscapes, the setting the authors list (shaoyuanlo/EDANet
train/train.PNG, train/class_weights_Cityscapes.PNG, models/EDANet.PNG):
`--config=configs/cityscapes_edanet.py`.

19 classes on whole frames at 512x1024 (the paper's input; evaluation resizes the logits to
the full-resolution labels, its inference-only x2), random horizontal flip; PyTorch's Adam
(betas 0.9 / 0.999, eps 1e-8, L2 weight decay 1e-4 in the gradient) at lr 5e-4 with poly decay
(power 0.9) to 0, batch 10, from scratch; cross-entropy weighted by the listed class weights
(1 / ln(p + 1.12), given to one decimal), averaged as PyTorch does (by the labelled pixels'
weights); channel dropout 0.02 in every EDA module.

Not published, chosen here: the length, 150 epochs of the 2975 training images (298 steps each:
44,700 steps), ERFNet's, whose code's setting the listed one repeats but for the batch; the
input normalisation (the dataset's mean and std). Left out: the random translation by 0-2
pixels (not available here).
"""

import ml_collections

from configs import cnn_recipes
from configs import common
from configs import datasets
from configs import default

# train/class_weights_Cityscapes.PNG: classWeight[0..18].
CLASS_WEIGHTS = (2.7, 6.1, 3.6, 7.7, 7.7, 8.1, 8.6, 8.4, 4.3, 7.7, 6.8, 8.0, 8.6, 5.9, 7.7, 7.5,
                 6.6, 8.5, 8.4)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, smoke=False)
  config = default.get_config()
  datasets.cityscapes_half_frames(config)
  config.model.name = 'edanet'
  config.model.variant = 'edanet'
  config.model.dropout_rate = 0.02
  config.model.drop_path_rate = 0.0
  config.loss.class_weights = CLASS_WEIGHTS
  config.loss.logits = (('cross_entropy', 1.0, {'average': 'weight'}),)  # PyTorch's mean.
  cnn_recipes.adam(config, lr=5e-4, weight_decay=1e-4)
  cnn_recipes.poly(config, power=0.9, min_lr=0.0)
  cnn_recipes.training_length(config, 10, 44_700, 4_470, num_workers=8)
  return common.maybe_smoke(config, arg)
