"""ESPNet and ESPNet-C (Mehta et al. 2018) on Cityscapes, the authors' setting (sacmehta/ESPNet
train/main.py, train/Transforms.py): `--config=configs/cityscapes_espnet.py` (ESPNet) or `:c`
(ESPNet-C), alpha2 = 2, alpha3 = 8.

The paper trains ESPNet-C first, then ESPNet with its encoder initialised from ESPNet-C: train
`:c`, then this config with --config.model.backbone_pretrained=<the ESPNet-C run's checkpoint or
the published pretrained/encoder/espnet_p_2_q_8.pth>; the published ESPNet weights
(pretrained/decoder/espnet_p_2_q_8.pth) load with --config.model.pretrained and
--config.model.overrides="(('void_output', True),)" (they have a 20th, void output).

The setting: 19 classes; images resized to 1024x512 and, per epoch, also to 1536x768,
1280x720, 768x384 and 512x256 (one pass each), randomly cropped at the border and resized
back, flipped; BGR images normalised by the training set's mean and std and divided by 255;
PyTorch's Adam (betas 0.9 / 0.999, eps 1e-8, L2 weight decay 5e-4 in the gradient) at lr 5e-4,
halved every 100 of 300 epochs; batch 6 (ESPNet) or 12 (ESPNet-C), 8 / 14 in the 1024x512 pass:
706,800 steps (ESPNet) or 361,500 (ESPNet-C); cross-entropy weighted by 1 / ln(1.10 + p)
(computed at start from the training labels), averaged as PyTorch's NLLLoss2d (by the labelled
pixels' weights). Evaluation at 1024x512.

Differences: one random rescaling of the 1024x512 frame by [0.5, 1.5] with 512x1024 crops
(padded where smaller) stands in for the five fixed-size passes, and one batch size for all;
the code trains ESPNet-C against labels shrunk to 1/8 (nearest), here the logits are upsampled
to the labels; its void class (a 20th output, weighted) is the ignore label here, so the class
weights come from the 19 classes' pixels only.
"""

import ml_collections

from configs import cnn_recipes
from configs import common
from configs import datasets
from configs import default

# (model variant, batch, steps, steps between the lr's halvings)
VARIANTS = {'espnet': ('espnet', 6, 706_800, 235_600), 'c': ('espnet_c', 12, 361_500, 120_500)}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, variant=common.Choice('espnet', VARIANTS), smoke=False)
  variant, batch, steps, halve_every = arg.variant
  config = default.get_config()
  datasets.cityscapes(config)
  config.data.channel_order = 'bgr'  # test/VisualizeResults.py's values, in BGR order, / 255.
  config.data.mean = (72.3923111, 82.90893555, 73.15840149)
  config.data.std = (45.3192215 * 255, 46.15289307 * 255, 44.91483307 * 255)
  config.augment.resize_scale = (1024, 512)
  config.augment.ratio_range = (0.5, 1.5)
  config.augment.crop_size = (512, 1024)
  config.augment.cat_max_ratio = 1.0
  config.augment.photometric = False
  config.eval.resize_scale = (1024, 512)
  config.model.name = 'espnet'
  config.model.variant = variant
  config.model.dropout_rate = 0.0
  config.model.drop_path_rate = 0.0
  config.loss.class_weighting = 'espnet'
  config.loss.logits = (('cross_entropy', 1.0, {'average': 'weight'}),)  # NLLLoss2d's mean.
  cnn_recipes.adam(config, lr=5e-4, weight_decay=5e-4)
  config.schedule.name = 'step'
  config.schedule.warmup_steps = 0
  config.schedule.step_size = halve_every
  config.schedule.step_gamma = 0.5
  cnn_recipes.training_length(config, batch, steps, steps // 30, num_workers=8)
  return common.maybe_smoke(config, arg)
