"""The argument convention of every config file, and the `smoke` argument every config accepts.

    --config=configs/<file>.py:<arguments>

<arguments> is a comma-separated list. `name=value` sets the argument `name`; a bare word that
names a boolean argument sets it to True (`smoke`); any other bare word fills the next
positional argument, in the order the config file declares them (`:b2`, `:cityscapes,b2`). No
arguments: every default. Each config's docstring lists its arguments, e.g.
`configs/ade20k_segformer.py:b2`, `configs/cityscapes_pspnet.py:r101,smoke`,
`configs/segformer.py:dataset=voc12aug,variant=b0`.

`smoke` shrinks any config to a run of a few CPU minutes that checks it end to end: the same
model and recipe, trained for 4 steps of 2 images at 64x64 and evaluated twice, on a tiny tree
written in the dataset's own on-disk layout under <workdir>/example_data (config.data
.example_tree), or on a small synthetic dataset. Pretrained weights are not loaded (nothing can
be fetched on a laptop or CI machine).
"""

import dataclasses
import os
import types
from typing import Any, Mapping, Sequence

import ml_collections


@dataclasses.dataclass(frozen=True)
class Choice:
  """An argument taking one of `choices` (a sequence, or a mapping from the argument to the
  value the config uses, e.g. {'r50': 'r50-d8'})."""
  default: str
  choices: Sequence[str] | Mapping[str, Any]


def _parse_value(text: str, default: Any, name: str, where: str) -> Any:
  if isinstance(default, bool):
    if text.lower() in ('', 'true', '1'):
      return True
    if text.lower() in ('false', '0'):
      return False
    raise ValueError(f'{where}: argument {name}={text!r} is not a boolean.')
  if isinstance(default, (int, float)):
    try:
      return type(default)(text)
    except ValueError:
      raise ValueError(f'{where}: argument {name}={text!r} is not a {type(default).__name__}.'
                       ) from None
  return text


def parse_arg(config_file: str, arg: str | None, **spec: Any) -> types.SimpleNamespace:
  """The arguments of `config_file` (pass `__file__`) from the string after ':' in --config.

  `spec` gives each argument's default (its type sets the parsing), or a Choice. The order of
  `spec` is the order of positional arguments. Unknown arguments and values outside a Choice
  are errors naming the config file and what it accepts.
  """
  where = f'configs/{os.path.basename(config_file)}'
  values = {name: (d.default if isinstance(d, Choice) else d) for name, d in spec.items()}
  positional = [name for name, d in spec.items() if not isinstance(d, bool)]
  given = set()
  for item in [s.strip() for s in (arg or '').split(',') if s.strip()]:
    name, equals, text = item.partition('=')
    if not equals:
      if isinstance(spec.get(item), bool):
        name, text = item, 'true'
      else:
        remaining = [n for n in positional if n not in given]
        if not remaining:
          raise ValueError(f'{where}: argument {item!r} has no place; it takes '
                           f'{_usage(spec)}.')
        name, text = remaining[0], item
    if name not in spec:
      raise ValueError(f'{where}: unknown argument {name!r}; it takes {_usage(spec)}.')
    if name in given:
      raise ValueError(f'{where}: argument {name!r} given twice.')
    given.add(name)
    default = spec[name]
    if isinstance(default, Choice):
      if text not in default.choices:
        raise ValueError(f'{where}: {name}={text!r} is not one of {sorted(default.choices)}.')
      values[name] = text
    else:
      values[name] = _parse_value(text, default, name, where)
  for name, default in spec.items():
    if isinstance(default, Choice) and isinstance(default.choices, Mapping):
      values[name] = default.choices[values[name]]
  return types.SimpleNamespace(**values)


def _usage(spec: Mapping[str, Any]) -> str:
  parts = []
  for name, default in spec.items():
    if isinstance(default, Choice):
      parts.append(f'{name} (one of {", ".join(sorted(default.choices))}; default '
                   f'{default.default})')
    elif isinstance(default, bool):
      parts.append(name)
    else:
      parts.append(f'{name} (default {default!r})')
  return ', '.join(parts)


SMOKE_CROP = (64, 64)
SMOKE_BATCH = 2
SMOKE_STEPS = 4


def _smoke_resize(scale: tuple, crop: tuple[int, int]) -> tuple:
  """A (long, short) resize scale shrunk so that its short side is the smoke crop's."""
  if not scale:
    return ()
  long, short = (max(scale), min(scale))
  return (round(long * crop[0] / short), crop[0])


def _smoke_inference(settings: ml_collections.ConfigDict, crop: tuple[int, int]) -> None:
  """Shrinks the inference fields that an evaluation setting (config.eval or an evaluator)
  sets; fields left None keep following config.eval."""
  if settings.resize_scale:
    settings.resize_scale = _smoke_resize(tuple(settings.resize_scale), crop)
  if settings.crop_size is not None:
    settings.crop_size = crop
  if settings.stride is not None:
    settings.stride = (48, 48)
  if settings.batch_size is not None:
    settings.batch_size = SMOKE_BATCH
  if settings.num_overlays is not None:
    settings.num_overlays = min(settings.num_overlays, 2)


def smoke(config: ml_collections.ConfigDict,
          crop: tuple[int, int] = SMOKE_CROP) -> ml_collections.ConfigDict:
  """The same config at the smallest size that still runs every part: see the module
  docstring. `crop`: SMOKE_CROP, or a larger one for a model that needs it (DeconvNet)."""
  config.data.example_tree = True
  config.data.num_workers = 0
  config.data.synthetic_image_size = crop
  config.data.synthetic_train_size, config.data.synthetic_eval_size = 16, 4
  config.model.pretrained = config.model.backbone_pretrained = ''
  config.augment.crop_size = crop
  config.augment.resize_scale = _smoke_resize(tuple(config.augment.resize_scale), crop)
  config.train.batch_size = SMOKE_BATCH
  config.train.num_steps = SMOKE_STEPS
  config.train.eval_every = SMOKE_STEPS // 2
  config.train.log_every = 1
  config.train.grad_accum_steps = 1
  config.checkpoint.every_steps = SMOKE_STEPS // 2
  config.schedule.warmup_steps = min(config.schedule.warmup_steps, 1)
  for output in ('logits', 'aux', 'detail'):
    config.loss[output] = tuple(
        (name, weight, {**options, 'images_per_group': 1} if options.get('images_per_group')
         else options) for name, weight, options in config.loss[output])
  _smoke_inference(config.eval, crop)
  for entry in config.evals.values():
    _smoke_inference(entry, crop)
    if entry.every_steps is not None and entry.every_steps > 0:
      entry.every_steps = SMOKE_STEPS // 2
  config.benchmark.batch_size = SMOKE_BATCH
  config.benchmark.warmup_steps, config.benchmark.steps = 1, 2
  config.benchmark.eval_image_hw = (64, 96)
  config.benchmark.data_workers = (1,)
  config.benchmark.data_warmup_batches, config.benchmark.data_batches = 1, 2
  return config


def maybe_smoke(config: ml_collections.ConfigDict, arg: types.SimpleNamespace,
                crop: tuple[int, int] = SMOKE_CROP) -> ml_collections.ConfigDict:
  """`config`, shrunk by `smoke` (to `crop`) when the config file's arguments say `smoke`."""
  return smoke(config, crop) if arg.smoke else config
