"""SFNet on Cityscapes, the official recipe (lxtGH/SFSegNets
`scripts/cityscapes/train_cityscapes_sfnet_res18.sh` and train.py's defaults): SGD momentum 0.9,
weight decay 1e-4, lr 0.01, poly decay with power 1.0 to 0 and no warm-up; 300 epochs at global
batch 16 (about 55.8k steps); 1024x1024 crops of (2048, 1024) x [0.5, 2], flip and colour
jitter; OHEM cross-entropy with HRNet's and SFNet's definition (thresh 0.7, min_kept 10000,
the mean over the kept pixels, mined per GPU: 8 GPUs of 2 images) on the main output only (no
deep-supervision heads); whole-image test.
Differences: the reference steps its poly schedule once per epoch (here every step), jitters
colour with torchvision's ColorJitter and blurs (here the photometric distortion), and samples
half of its crops class-uniformly (not available here); its OhemCrossEntropy2dTensor takes the
min_kept-th smallest probability with <= (here HRNet's: the (min_kept + 1)-th with <, see
semseg_jax.losses.pixel.ohem_cross_entropy).

--config=configs/cityscapes_sfnet.py:<backbone>, <backbone> one of r18, r50, r101.
"""

import ml_collections

from configs import common
from configs import cnn_recipes

BACKBONES = ('r18', 'r50', 'r101')


def sfnet_recipe(config: ml_collections.ConfigDict) -> None:
  """SFNet's optimizer, schedule and loss (shared with configs/ade20k_sfnet.py)."""
  config.model.aux_head = False
  config.loss.logits = (cnn_recipes.ohem('kept_mean', min_kept=10_000, images_per_gpu=2),)
  cnn_recipes.sgd(config, lr=0.01, momentum=0.9, weight_decay=1e-4)
  cnn_recipes.poly(config, power=1.0, min_lr=0.0)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, variant=common.Choice('r18', BACKBONES), smoke=False)
  config = cnn_recipes.mmseg_cnn('cityscapes', 'sfnet', arg.variant)
  config.augment.crop_size = (1024, 1024)
  config.augment.cat_max_ratio = 1.0
  sfnet_recipe(config)
  cnn_recipes.training_length(config, 16, 55_800, 5_580, num_workers=8)
  return common.maybe_smoke(config, arg)
