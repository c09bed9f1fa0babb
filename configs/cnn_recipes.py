"""The recipes of the classic CNN benchmarks, and the optimizer, schedule and loss pieces (sgd,
adam, adamw, poly, linear_warmup, transformer_schedule, ohem) that every zoo config composes.

`mmseg_cnn(dataset, model, variant)` is mmsegmentation's schedule for its CNN results (PSPNet,
DeepLabV3/V3+, FCN, UPerNet... on ResNet-D8): SGD lr 0.01, momentum 0.9, weight decay 5e-4 on
every parameter (norms included), poly decay with power 0.9 to a minimum lr of 1e-4, no
warm-up, auxiliary FCN head with loss weight 0.4, dropout 0.1 before the classifier (none for
GCN and DUC-HDC, whose references have none), and per dataset the batch and length of its
schedules:
  cityscapes: 512x1024 crops, global batch 8, 80k steps (mmseg's *_4xb2-80k_cityscapes-512x1024)
  ade20k:     512x512 crops, global batch 16, 160k steps (*_4xb4-160k_ade20k-512x512)
  voc12aug:   512x512 crops, global batch 16, 40k steps (*_4xb4-40k_voc12aug-512x512)
Data, augmentation and evaluation settings come from configs/datasets.py.
"""

import ml_collections

from configs import datasets
from configs import default

# Models whose papers and references have no dropout before the classifier.
NO_DROPOUT = ('gcn', 'duc_hdc')

# dataset -> (global batch, steps, steps between evaluations)
SCHEDULES = {
    'cityscapes': (8, 80_000, 8_000),
    'ade20k': (16, 160_000, 16_000),
    'voc12aug': (16, 40_000, 4_000),
}


def mmseg_cnn(dataset: str, model: str, variant: str) -> ml_collections.ConfigDict:
  """`model` (a key of semseg_jax.models.MODELS) at `variant` trained on `dataset` with
  mmsegmentation's CNN recipe."""
  config = default.get_config()
  datasets.SETTINGS[dataset](config)
  config.model.name = model
  config.model.variant = variant
  config.model.dropout_rate = 0.0 if model in NO_DROPOUT else 0.1
  config.model.drop_path_rate = 0.0
  config.model.aux_head = True
  config.loss.logits = (('cross_entropy', 1.0, {}),)
  config.loss.aux = (('cross_entropy', 0.4, {}),)
  sgd(config, lr=0.01, momentum=0.9, weight_decay=5e-4)
  poly(config, power=0.9, min_lr=1e-4)
  training_length(config, *SCHEDULES[dataset], num_workers=8)
  return config


def training_length(config: ml_collections.ConfigDict, batch_size: int, num_steps: int,
                    eval_every: int, num_workers: int) -> None:
  """Global batch and steps; evaluation and checkpoints every `eval_every` steps."""
  config.train.batch_size = batch_size
  config.train.num_steps = num_steps
  config.train.eval_every = eval_every
  config.checkpoint.every_steps = eval_every
  config.eval.batch_size = 8
  config.data.num_workers = num_workers


def constant_lr(config: ml_collections.ConfigDict) -> None:
  """A fixed learning rate from the first step (the Caffe / Torch7 papers' setting)."""
  config.schedule.name = 'constant'
  config.schedule.warmup_steps = 0


def sgd(config: ml_collections.ConfigDict, lr: float, momentum: float,
        weight_decay: float) -> None:
  """PyTorch SGD (L2 weight decay on every parameter, no per-part learning rates)."""
  config.optimizer.name = 'sgd'
  config.optimizer.lr = lr
  config.optimizer.momentum = momentum
  config.optimizer.weight_decay = weight_decay
  config.optimizer.no_decay_patterns = ()
  config.optimizer.lr_multipliers = ()


def poly(config: ml_collections.ConfigDict, power: float, min_lr: float) -> None:
  """mmengine's PolyLR without warm-up: lr_t = (lr - min_lr) (1 - t / T)^power + min_lr."""
  config.schedule.name = 'poly'
  config.schedule.warmup_steps = 0
  config.schedule.power = power
  config.schedule.end_factor = min_lr / config.optimizer.lr


def variant_of(config_file: str, arguments: str, choices: dict[str, str]) -> str:
  """The model variant that a config file's argument names (e.g. 'r50' -> 'r50-d8')."""
  if arguments not in choices:
    raise ValueError(f'{config_file}: unknown argument {arguments!r}; expected one of '
                     f'{sorted(choices)} (as {config_file}:<argument>).')
  return choices[arguments]


def linear_warmup(config: ml_collections.ConfigDict, steps: int, init_factor: float) -> None:
  """mmengine's LinearLR before the decay: lr rises from init_factor * lr over `steps`."""
  config.schedule.warmup_steps = steps
  config.schedule.warmup_init_factor = init_factor


def adamw(config: ml_collections.ConfigDict, lr: float, weight_decay: float,
          no_decay_patterns: tuple[str, ...], lr_multipliers: tuple) -> None:
  """AdamW, betas (0.9, 0.999), with per-parameter weight decay and learning-rate rules."""
  config.optimizer.name = 'adamw'
  config.optimizer.lr = lr
  config.optimizer.b1, config.optimizer.b2 = 0.9, 0.999
  config.optimizer.weight_decay = weight_decay
  config.optimizer.no_decay_patterns = no_decay_patterns
  config.optimizer.lr_multipliers = lr_multipliers


def adam(config: ml_collections.ConfigDict, lr: float, weight_decay: float) -> None:
  """PyTorch's (and Torch7's) Adam: betas (0.9, 0.999), eps 1e-8, L2 weight decay added to the
  gradient of every parameter, no per-part learning rates."""
  config.optimizer.name = 'adam'
  config.optimizer.lr = lr
  config.optimizer.b1, config.optimizer.b2, config.optimizer.eps = 0.9, 0.999, 1e-8
  config.optimizer.weight_decay = weight_decay
  config.optimizer.no_decay_patterns = ()
  config.optimizer.lr_multipliers = ()


def ohem(definition: str, min_kept: int, images_per_gpu: int, thresh: float = 0.7) -> tuple:
  """OHEM cross-entropy as a loss term, mined per group of the reference's images per GPU, with
  its definition: 'mmseg' (OHEMPixelSampler + CrossEntropyLoss) or 'kept_mean' (HRNet, SFNet);
  see semseg_jax.losses.pixel.ohem_cross_entropy."""
  return ('ohem_cross_entropy', 1.0, {'thresh': thresh, 'min_kept': min_kept,
                                      'images_per_group': images_per_gpu,
                                      'definition': definition})


def transformer_schedule(config: ml_collections.ConfigDict) -> None:
  """mmseg's schedule for SegFormer, SegNeXt and TopFormer: linear warm-up over 1500 steps
  from 1e-6 x lr, then poly decay with power 1 to 0."""
  poly(config, power=1.0, min_lr=0.0)
  linear_warmup(config, steps=1500, init_factor=1e-6)
