"""--mode=benchmark, the model benchmark: parameter count, GFLOPs per image (XLA's cost analysis
of the compiled step), compile time, and train and inference images/s at the config's crop,
after warm-up; then the evaluation step (config.eval: whole or slide, scales, flip) on one image
of config.benchmark.eval_image_hw per device: its compile time, XLA's memory plan for it (peak
bytes per device: arguments + outputs + temporaries), seconds per image, and the bare model's
seconds for the same views (each scale's canvas or windows, flipped too) with what the
evaluation costs beyond them in percent (eval_overhead_percent). The two alternate
config.benchmark.eval_rounds times and each reports its fastest round: one pass of each read
anywhere from 14% to 110% overhead on a busy 2-core machine for the same code.

Inputs are random arrays already on the devices, so the figures measure the model and the
step, not the input pipeline.
"""

import functools
import json
import os
import time
from typing import Any, Callable

import jax
import ml_collections
import numpy as np

from semseg_jax import sharding
from semseg_jax import train_state
from semseg_jax import train_step
from semseg_jax.data import datasets
from semseg_jax.data import pipeline
from semseg_jax.evaluators import inference


def _flops(compiled: Any) -> float:
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  return float((analysis or {}).get('flops', float('nan')))


def _time_steps(fn: Callable, args: tuple, warmup: int, steps: int,
                carry_first: bool) -> float:
  """Seconds per call of `fn`, after `warmup` calls; threads the first output through when
  `carry_first` (a train step's state)."""
  def call(args):
    out = fn(*args)
    return (out[0], *args[1:]) if carry_first else args, out
  for _ in range(warmup):
    args, out = call(args)
    jax.block_until_ready(out)
  start = time.perf_counter()
  for _ in range(steps):
    args, out = call(args)
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / steps


def planned_peak_bytes(compiled: Any) -> int:
  """XLA's memory plan of a compiled function per device: arguments + outputs + temporaries."""
  memory = compiled.memory_analysis()
  return (memory.argument_size_in_bytes + memory.output_size_in_bytes
          + memory.temp_size_in_bytes - memory.alias_size_in_bytes)


def eval_batch(config: ml_collections.ConfigDict, image_hw: tuple[int, int], n: int,
               rng: np.random.Generator) -> dict:
  """An evaluation batch of n random images of size image_hw, as the pipeline makes it."""
  label_hw = np.array(image_hw, np.int32)
  images, image_hws = [], []
  for h, w in pipeline.eval_view_sizes(image_hw, config.eval):
    canvas = [pipeline.round_up(x, config.eval.pad_multiple) for x in (h, w)]
    image = np.zeros((n, *canvas, 3), np.float32)
    image[:, :h, :w] = rng.normal(size=(n, h, w, 3))
    images.append(image)
    image_hws.append(np.tile(np.array([h, w], np.int32), (n, 1)))
  return {'images': images, 'image_hws': image_hws,
          'label': np.zeros((n, *image_hw), np.int32), 'mask': np.ones((n, *image_hw), bool),
          'label_hw': np.tile(label_hw, (n, 1))}


@functools.partial(jax.jit, static_argnums=0)
def _inference_logits(model: Any, variables: Any, images: jax.Array) -> jax.Array:
  return model.apply(variables, images, train=False)['logits']


def bare_model_seconds(config: ml_collections.ConfigDict, model: Any, variables: Any,
                       image_hw: tuple[int, int], warmup: int = 1) -> float:
  """Seconds the model alone (a jitted inference forward, on one device) takes for what the
  evaluation of one image of image_hw feeds it: at each test scale, the padded canvas (whole
  mode) or its windows in batches of config.eval.windows_per_step (slide mode); twice with
  flip. The evaluation step's own cost is what it takes beyond this. `warmup` untimed calls of
  each shape first (the forward compiles once per model and shape, on the first)."""
  eval_config = config.eval
  forward = functools.partial(_inference_logits, model)
  single = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  on_one_device = jax.device_put(variables, single)
  total = 0.0
  for h, w in pipeline.eval_view_sizes(image_hw, eval_config):
    canvas = [pipeline.round_up(x, eval_config.pad_multiple) for x in (h, w)]
    calls, shape = 1, (1, *canvas, 3)
    if eval_config.mode == 'slide':
      window, _, _, per_step, calls = inference.slide_plan(
          canvas, tuple(eval_config.crop_size), tuple(eval_config.stride),
          eval_config.windows_per_step)
      shape = (per_step, *window, 3)
    images = jax.device_put(np.zeros(shape, np.float32), single)
    total += calls * _time_steps(forward, (on_one_device, images), warmup, 1, carry_first=False)
  return total * (2 if eval_config.flip else 1)


def eval_figures(config: ml_collections.ConfigDict, model: Any, variables: Any, mesh: Any,
                 num_classes: int) -> dict:
  """Compile time, XLA's per-device memory plan and seconds per image of the evaluation step
  on one config.benchmark.eval_image_hw image per device, and what that costs beyond the bare
  model's time for the same views (`bare_model_seconds`), in percent: the fastest of
  config.benchmark.eval_rounds alternating passes of each."""
  n = jax.device_count()
  image_hw = tuple(config.benchmark.eval_image_hw)
  batch_sharding = sharding.batch_sharding(mesh, tuple(config.mesh.data_axes))
  batch = sharding.to_global(eval_batch(config, image_hw, n, np.random.default_rng(0)),
                             batch_sharding)
  eval_step = inference.make_eval_step(model, config.eval, mesh, tuple(config.mesh.data_axes),
                                      num_classes, config.data.ignore_index)
  start = time.perf_counter()
  compiled = eval_step.lower(variables, batch).compile()
  compile_s = time.perf_counter() - start
  peak = planned_peak_bytes(compiled)
  step_s, model_s = [], []
  for round_ in range(config.benchmark.eval_rounds):
    warmup = 1 if round_ == 0 else 0
    step_s.append(_time_steps(compiled, (variables, batch), warmup, 1, carry_first=False))
    model_s.append(bare_model_seconds(config, model, variables, image_hw, warmup))
  step_s, model_s = min(step_s), min(model_s)
  views = len(pipeline.eval_scales(config.eval)) * (2 if config.eval.flip else 1)
  return {
      'eval_mode': (f'{config.eval.mode} {views} view(s)' + (
          f' window {tuple(config.eval.crop_size)} stride {tuple(config.eval.stride)} '
          f'{config.eval.windows_per_step} windows/step' if config.eval.mode == 'slide' else '')),
      'eval_image': f'{n}x{image_hw[0]}x{image_hw[1]}',
      'eval_compile_s': compile_s,
      'eval_peak_GiB_per_device': peak / 2**30,
      'eval_s_per_image': step_s / n,
      'eval_model_s_per_image': model_s,
      'eval_overhead_percent': 100 * (step_s / n / model_s - 1),
  }


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Measures and prints the figures; also writes them to <workdir>/benchmark.json."""
  num_classes = len(datasets.class_names_and_palette(config.data)[0])
  mesh = sharding.make_mesh(config.mesh)
  model, tx, schedule = train_state.build_model_and_optimizer(config, num_classes)
  bench = config.benchmark
  crop_h, crop_w = config.augment.crop_size
  state, state_shardings = train_state.create_train_state(model, tx, jax.random.key(config.seed),
                                                    (crop_h, crop_w), mesh,
                                                    config.mesh.partition_rules)
  num_params = sum(x.size for x in jax.tree.leaves(state.params))
  batch_sharding = sharding.batch_sharding(mesh, tuple(config.mesh.data_axes))
  rng = np.random.default_rng(config.seed)
  n = bench.batch_size
  batch = jax.device_put({
      'image': rng.normal(size=(n, crop_h, crop_w, 3)).astype(np.float32),
      'label': rng.integers(0, num_classes, size=(n, crop_h, crop_w),
                            dtype=np.int32)}, batch_sharding)

  step_fn = train_step.make_train_step(model, tx, schedule, config, state_shardings, mesh)
  start = time.perf_counter()
  train_compiled = step_fn.lower(state, batch).compile()
  train_compile_s = time.perf_counter() - start

  def infer(variables, images):
    return model.apply(variables, images, train=False)['logits']
  infer_jit = jax.jit(infer, out_shardings=batch_sharding)
  variables = state.variables()
  start = time.perf_counter()
  infer_compiled = infer_jit.lower(variables, batch['image']).compile()
  infer_compile_s = time.perf_counter() - start

  infer_s = _time_steps(infer_compiled, (variables, batch['image']), bench.warmup_steps,
                        bench.steps, carry_first=False)
  # Before the train steps, which donate (and so delete) the state's buffers.
  eval_results = eval_figures(config, model, variables, mesh, num_classes)
  train_s = _time_steps(train_compiled, (state, batch), bench.warmup_steps, bench.steps,
                        carry_first=True)
  results = {
      'model': f'{config.model.name}-{config.model.variant}',
      'devices': f'{jax.device_count()} x {jax.devices()[0].device_kind}',
      'dtype': config.model.dtype,
      'input': f'{n}x{crop_h}x{crop_w}',
      'params_M': num_params / 1e6,
      'inference_GFLOPs_per_image': _flops(infer_compiled) / n / 1e9,
      'train_GFLOPs_per_image': _flops(train_compiled) / n / 1e9,
      'train_compile_s': train_compile_s,
      'inference_compile_s': infer_compile_s,
      'train_images_per_s': n / train_s,
      'inference_images_per_s': n / infer_s,
  }
  results.update(eval_results)
  lines = [f'{k:28s} {v:.4g}' if isinstance(v, float) else f'{k:28s} {v}'
           for k, v in results.items()]
  print('\n'.join(lines), flush=True)
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, 'benchmark.json'), 'w') as f:
      json.dump(results, f, indent=1)
  return results
