"""DRN (Yu et al. 2017) on Cityscapes, the authors' setting (fyu/drn README and segment.py):
`--config=configs/cityscapes_drn.py:<variant>`, <variant> one of d22 (default), d38, c26, c42
(the README's basic recipe) or d105 (its recipe for DRN-D-105's best result).

DRNSeg starts its trunk from the authors' ImageNet DRN (segment.py builds it pretrained): pass
the file, e.g. --config.model.backbone_pretrained=drn_d_22-4bd2f8ea.pth (convert/drn.py reads
drn.py's names; the released Cityscapes models load with --config.model.pretrained).

Basic recipe (README's drn_d_22 command): 896x896 random crops of the full 2048x1024 frames,
random horizontal flip; the training set's mean and std (datasets/cityscapes/info.json); SGD,
lr 0.01, momentum 0.9, weight decay 1e-4, lr x0.1 every 100 epochs; batch 32 for 250 epochs of
the 2975 training images (92 full batches each: 23,000 steps); plain cross-entropy over the
labelled pixels (NLLLoss2d). Evaluation on whole frames.
d105: 840x840 crops after random rescaling by [0.5, 2], random rotation by up to 10 degrees
(not available here: left out), batch 16 for 500 epochs (185 batches each: 92,500 steps), poly
decay (power 0.9, per epoch in the code, per step here), synchronised BatchNorm (ours always is).
"""

import ml_collections

from configs import cnn_recipes
from configs import common
from configs import datasets
from configs import default

VARIANTS = ('d22', 'd38', 'c26', 'c42', 'd105')
CITYSCAPES_MEAN = (0.29010095242892997, 0.32808144844279574, 0.28696394422942517)
CITYSCAPES_STD = (0.1829540508368939, 0.18656561047509476, 0.18447508988480435)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, variant=common.Choice('d22', VARIANTS), smoke=False)
  config = default.get_config()
  datasets.cityscapes(config)
  config.data.mean = tuple(255 * m for m in CITYSCAPES_MEAN)
  config.data.std = tuple(255 * s for s in CITYSCAPES_STD)
  config.augment.cat_max_ratio = 1.0
  config.augment.photometric = False
  config.model.name = 'drn'
  config.model.variant = arg.variant
  config.model.dropout_rate = 0.0
  config.model.drop_path_rate = 0.0
  config.model.aux_head = False
  config.loss.logits = (('cross_entropy', 1.0, {}),)
  config.loss.aux = ()
  cnn_recipes.sgd(config, lr=0.01, momentum=0.9, weight_decay=1e-4)
  if arg.variant == 'd105':
    config.augment.crop_size = (840, 840)
    config.augment.ratio_range = (0.5, 2.0)
    cnn_recipes.poly(config, power=0.9, min_lr=0.0)
    cnn_recipes.training_length(config, 16, 92_500, 9_250, num_workers=16)
  else:
    config.augment.crop_size = (896, 896)
    config.augment.ratio_range = (1.0, 1.0)
    config.schedule.name = 'step'
    config.schedule.warmup_steps = 0
    config.schedule.step_size = 9_200
    config.schedule.step_gamma = 0.1
    cnn_recipes.training_length(config, 32, 23_000, 2_300, num_workers=8)
  return common.maybe_smoke(config, arg)
