"""Our train step and inference against the PyTorch references', side by side in one run:

  python -m semseg_jax.tools.compare_speed --models=segformer_b0,deeplabv3plus_r50

For each model, after warm-up, rounds alternate between the two implementations (ours' train
steps, the reference's, ours' inference, the reference's), so that both see the same machine
load; the figure of each is its median round. Same batch, crop, class count, optimizer (AdamW,
constant rate), loss (cross-entropy on the logits resized to the labels, plus 0.4 x the
auxiliary head's where the model has one) and dtype on both sides. References: Hugging Face
transformers' `SegformerForSemanticSegmentation` (SegFormer), and mmsegmentation's
DeepLabV3+ R50-D8 written out in plain PyTorch (`tools/torch_deeplabv3plus.py`). Prints
images/s and ours / reference for each, and writes them to --output as JSON. Run as a command,
it starts again with huge pages for both sides' buffers where that helps (`huge_pages.py`), as
`main.py` does.

Needs PyTorch and transformers: `pip install -e ".[torch]"`.
"""

import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable

from semseg_jax import huge_pages
from semseg_jax import xla_flags

if __name__ == '__main__':  # As main.py: both sides' buffers get huge pages where that helps.
  huge_pages.restart_with_huge_pages()
xla_flags.set_defaults()  # Before jax starts a backend (main.py's flags).

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags  # pylint: disable=g-import-not-at-top
import jax  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from semseg_jax import models
from semseg_jax import sharding
from semseg_jax import train_state
from semseg_jax import train_step
from semseg_jax.tools import model_stats
from semseg_jax.tools import model_table

try:
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
except ImportError as error:
  torch = transformers = None
  _MISSING = error

FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class Pair:
  """One model in both implementations: our config (configs/<config>.py:<argument>) and the
  reference's maker."""
  config: str
  argument: str
  reference: Callable[[int], Any]
  aux_weight: float  # The auxiliary head's loss weight (0: none).


def _hf_segformer(variant: str) -> Callable[[int], Any]:
  def make(num_classes: int):
    from semseg_jax.models import segformer  # pylint: disable=g-import-not-at-top
    size = segformer.SEGFORMER_VARIANTS[variant]
    config = transformers.SegformerConfig(
        depths=list(size['depths']), hidden_sizes=list(size['widths']),
        decoder_hidden_size=size['decoder_dim'], num_labels=num_classes)
    return transformers.SegformerForSemanticSegmentation(config)
  return make


def _torch_deeplabv3plus(num_classes: int):
  from semseg_jax.tools import torch_deeplabv3plus  # pylint: disable=g-import-not-at-top
  return torch_deeplabv3plus.DeepLabV3PlusR50D8(num_classes)


PAIRS = {
    'segformer_b0': Pair('ade20k_segformer', 'b0', _hf_segformer('b0'), 0.0),
    'segformer_b2': Pair('ade20k_segformer', 'b2', _hf_segformer('b2'), 0.0),
    'deeplabv3plus_r50': Pair('ade20k_deeplabv3plus', 'r50', _torch_deeplabv3plus, 0.4),
}

flags.DEFINE_list('models', ['segformer_b0', 'deeplabv3plus_r50'],
                  f'Models to compare: {", ".join(PAIRS)}.')
flags.DEFINE_integer('batch_size', 2, 'Images per step.')
flags.DEFINE_list('crop', ['512', '512'], 'Input height,width.')
flags.DEFINE_integer('num_classes', 150, 'Output classes.')
flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'],
                  'Compute dtype (parameters stay float32; PyTorch: CPU autocast).')
flags.DEFINE_float('lr', 6e-5, "AdamW's learning rate (both sides).")
flags.DEFINE_float('weight_decay', 0.01, "AdamW's weight decay (both sides).")
flags.DEFINE_integer('warmup', 2, 'Untimed steps of each kind before the rounds.')
flags.DEFINE_integer('rounds', 3, 'Alternating timed rounds.')
flags.DEFINE_integer('steps', 3, 'Steps per round and kind.')
flags.DEFINE_string('output', 'compare_speed.json', 'Where the figures are written (JSON).')


def our_config(pair: Pair, batch_size: int, crop: tuple[int, int], dtype: str,
               lr: float, weight_decay: float):
  """The model's config with the comparison's shared settings."""
  config = model_table.load_config(pair.config, pair.argument)
  config.train.batch_size = batch_size
  config.augment.crop_size = crop
  config.model.dtype = dtype
  config.optimizer.name, config.optimizer.lr = 'adamw', lr
  config.optimizer.weight_decay = weight_decay
  config.optimizer.lr_multipliers, config.optimizer.no_decay_patterns = (), ()
  config.schedule.name, config.schedule.warmup_steps = 'constant', 0
  config.loss.aux = (('cross_entropy', pair.aux_weight, {}),) if pair.aux_weight else ()
  config.model.aux_head = bool(pair.aux_weight)
  return config


def ours(pair: Pair, images: np.ndarray, labels: np.ndarray, num_classes: int, **settings
         ) -> tuple[Callable[[], Any], Callable[[], Any], Callable[[], Any], int, int]:
  """(one train step, one inference, wait for the device, parameter count, multiply-adds of
  one image's float32 inference) of semseg_jax's model, jitted; the steps are dispatched without
  waiting (the device's queue stays full, as in training), the third call waits for them."""
  config = our_config(pair, images.shape[0], images.shape[1:3], **settings)
  mesh = sharding.make_mesh(config.mesh)
  model, tx, schedule = train_state.build_model_and_optimizer(config, num_classes)
  state, shardings = train_state.create_train_state(model, tx, jax.random.key(0),
                                                    images.shape[1:3], mesh)
  batch_sharding = sharding.batch_sharding(mesh, tuple(config.mesh.data_axes))
  batch = jax.device_put({'image': images, 'label': labels}, batch_sharding)
  step = train_step.make_train_step(model, tx, schedule, config, shardings, mesh)
  infer = jax.jit(lambda variables, x: model.apply(variables, x, train=False)['logits'])
  holder = {'state': state, 'last': None}
  num_params = sum(x.size for x in jax.tree.leaves(state.params))
  # Counted on the float32 model: the same network in any dtype, and its attention then the
  # einsums the count sees (in half precision on a GPU it is cuDNN's fused kernel).
  counted = our_config(pair, 1, images.shape[1:3], **{**settings, 'dtype': 'float32'})
  macs = model_stats.inference_macs(models.build_model(counted.model, num_classes),
                                    images.shape[1:3])

  def train():
    holder['state'], holder['last'] = step(holder['state'], batch)

  def inference():
    holder['last'] = infer(holder['state'].variables(), batch['image'])

  def wait():
    jax.block_until_ready((holder['state'], holder['last']))
  return train, inference, wait, num_params, macs


def reference(pair: Pair, images: np.ndarray, labels: np.ndarray, num_classes: int,
              dtype: str, lr: float, weight_decay: float, device: str = 'cpu',
              compile_model: bool = False, channels_last: bool = False
              ) -> tuple[Callable[[], Any], Callable[[], Any], Callable[[], Any], int]:
  """(one train step, one inference, wait for the device, parameter count) of the PyTorch
  reference on `device` ('cpu' or 'cuda'), optionally through `torch.compile` and in the
  channels-last memory format."""
  torch.manual_seed(0)
  model = pair.reference(num_classes).to(device)
  num_params = sum(p.numel() for p in model.parameters())
  optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
  x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).to(device)
  y = torch.from_numpy(labels.astype(np.int64)).to(device)
  if channels_last:
    model = model.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
  forward = torch.compile(model) if compile_model else model
  autocast = torch.autocast(device, torch.bfloat16, enabled=dtype == 'bfloat16')

  def loss_of(outputs) -> torch.Tensor:
    outputs = outputs if isinstance(outputs, tuple) else (outputs.logits,)
    losses = [torch.nn.functional.cross_entropy(
        torch.nn.functional.interpolate(o.float(), y.shape[1:], mode='bilinear',
                                        align_corners=False), y, ignore_index=255)
              for o in outputs]
    return losses[0] + pair.aux_weight * sum(losses[1:])

  def train():
    model.train()
    optimizer.zero_grad(set_to_none=True)
    with autocast:
      loss = loss_of(forward(x))
    loss.backward()
    optimizer.step()

  def inference():
    model.eval()
    with torch.inference_mode(), autocast:
      forward(x)

  def wait():
    if device != 'cpu':
      torch.cuda.synchronize()
  return train, inference, wait, num_params


def _seconds(fn: Callable[[], Any], wait: Callable[[], Any], steps: int) -> float:
  """Seconds per call of `fn` over `steps` calls, waiting for the device once at the end."""
  wait()
  start = time.perf_counter()
  for _ in range(steps):
    fn()
  wait()
  return (time.perf_counter() - start) / steps


def compare(name: str, batch_size: int, crop: tuple[int, int], num_classes: int, dtype: str,
            lr: float, weight_decay: float, warmup: int, rounds: int, steps: int,
            device: str = 'cpu', torch_compile: bool = False, channels_last: bool = False
            ) -> dict:
  """The figures of one model: images/s of each side (median round), ours / reference, and
  the multiply-adds of one image's inference. `device`, `torch_compile` and `channels_last`
  are the reference's (ours runs on jax's default backend)."""
  pair = PAIRS[name]
  rng = np.random.default_rng(0)
  images = rng.normal(size=(batch_size, *crop, 3)).astype(np.float32)
  labels = rng.integers(0, num_classes, (batch_size, *crop)).astype(np.int32)
  settings = dict(dtype=dtype, lr=lr, weight_decay=weight_decay)
  start = time.perf_counter()
  our_train, our_infer, our_wait, our_params, macs = ours(pair, images, labels, num_classes,
                                                          **settings)
  their_train, their_infer, their_wait, their_params = reference(
      pair, images, labels, num_classes, **settings, device=device,
      compile_model=torch_compile, channels_last=channels_last)
  # In this order in every round: the two sides alternate under the same machine load.
  sides = {'ours_train': (our_train, our_wait), 'reference_train': (their_train, their_wait),
           'ours_inference': (our_infer, our_wait),
           'reference_inference': (their_infer, their_wait)}
  for fn, wait in sides.values():  # Compiles (ours; the reference's under torch.compile).
    _seconds(fn, wait, warmup)
  warmup_s = time.perf_counter() - start
  times = {key: [] for key in sides}
  for _ in range(rounds):
    for key, (fn, wait) in sides.items():
      times[key].append(_seconds(fn, wait, steps))
  rates = {f'{key}_images_per_s': batch_size / statistics.median(seconds)
           for key, seconds in times.items()}
  return {
      'model': name, 'ours_config': f'{pair.config}:{pair.argument}', 'batch_size': batch_size,
      'crop': list(crop), 'num_classes': num_classes, 'dtype': dtype,
      'reference_device': device, 'torch_compile': torch_compile,
      'channels_last': channels_last,
      'ours_params': our_params, 'reference_params': their_params,
      'inference_macs_per_image': macs, **rates,
      'train_ratio': rates['ours_train_images_per_s'] / rates['reference_train_images_per_s'],
      'inference_ratio': (rates['ours_inference_images_per_s']
                          / rates['reference_inference_images_per_s']),
      'warmup_s': warmup_s, 'rounds': rounds, 'steps_per_round': steps,
  }


def machine() -> dict:
  return {'platform': platform.platform(), 'processor': platform.processor(),
          'cpu_count': os.cpu_count(),
          'jax': jax.__version__, 'jax_devices': f'{jax.device_count()} x '
          f'{jax.devices()[0].device_kind}', 'torch': torch.__version__,
          'torch_threads': torch.get_num_threads(), 'transformers': transformers.__version__}


def main(argv: list[str]) -> None:
  del argv
  if torch is None:
    sys.exit(f'compare_speed needs PyTorch and transformers, the references it times '
             f'({_MISSING}); install them with: pip install -e ".[torch]"')
  unknown = [m for m in FLAGS.models if m not in PAIRS]
  if unknown:
    sys.exit(f'--models: unknown {", ".join(unknown)}; known: {", ".join(PAIRS)}.')
  crop = tuple(int(c) for c in FLAGS.crop)
  if len(crop) != 2:
    sys.exit(f'--crop={",".join(FLAGS.crop)}: expected height,width.')
  header = machine()
  print(json.dumps(header), flush=True)
  results = []
  print(f'{"model":20s} {"kind":10s} {"ours img/s":>11s} {"reference":>11s} {"ratio":>7s}',
        flush=True)
  for name in FLAGS.models:
    result = compare(name, FLAGS.batch_size, crop, FLAGS.num_classes, FLAGS.dtype, FLAGS.lr,
                     FLAGS.weight_decay, FLAGS.warmup, FLAGS.rounds, FLAGS.steps)
    results.append(result)
    for kind in ('train', 'inference'):
      print(f'{name:20s} {kind:10s} {result[f"ours_{kind}_images_per_s"]:11.3f} '
            f'{result[f"reference_{kind}_images_per_s"]:11.3f} '
            f'{result[f"{kind}_ratio"]:7.2f}', flush=True)
  with open(FLAGS.output, 'w') as f:
    json.dump({'machine': header, 'results': results}, f, indent=1)
  print(f'Written to {FLAGS.output}.')


def cli() -> None:
  app.run(main)


if __name__ == '__main__':
  cli()
