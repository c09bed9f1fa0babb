"""The training loop: config -> grain input -> model -> jit-sharded train step -> evaluation,
orbax checkpoints and clu logs. Read top to bottom."""

import json
import os
import signal
import time
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from clu import metric_writers
from clu import parameter_overview
from clu import periodic_actions
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from semseg_jax import checkpointing
from semseg_jax import convert
from semseg_jax import evaluate
from semseg_jax import losses
from semseg_jax import metrics
from semseg_jax import models
from semseg_jax import optimizers
from semseg_jax import sharding
from semseg_jax import visualize
from semseg_jax.data import check
from semseg_jax.data import datasets
from semseg_jax.data import pipeline


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # Batches consumed (skipped non-finite steps included).
  params: Any
  batch_stats: Any
  opt_state: Any
  skipped_steps: jax.Array  # Steps whose loss or gradient was not finite (state kept).
  bad_streak: jax.Array  # Consecutive such steps up to now.

  def variables(self) -> dict:
    """The model variables for `model.apply`."""
    if self.batch_stats:
      return {'params': self.params, 'batch_stats': self.batch_stats}
    return {'params': self.params}


def create_train_state(model: nn.Module, tx: optax.GradientTransformation, rng: jax.Array,
                       input_hw: tuple[int, int], mesh: Mesh,
                       partition_rules: Any = ()) -> tuple[TrainState, Any]:
  """The initial state, created by a jitted init directly into its shardings (replicated, or
  by config.mesh.partition_rules: see sharding.leaf_spec)."""
  def init():
    param_rng, dropout_rng = jax.random.split(rng)
    images = jnp.zeros((1, *input_hw, 3), jnp.float32)
    variables = model.init({'params': param_rng, 'dropout': dropout_rng}, images, train=False)
    params = variables['params']
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get('batch_stats', {}), opt_state=tx.init(params),
                      skipped_steps=jnp.zeros((), jnp.int32), bad_streak=jnp.zeros((), jnp.int32))
  abstract = jax.eval_shape(init)
  shardings = sharding.state_shardings(abstract, mesh, partition_rules)
  return jax.jit(init, out_shardings=shardings)(), shardings


def _micro_batches(batch: dict, count: int) -> dict:
  """[B, ...] arrays -> [count, B / count, ...]: micro-batch k is rows k, k + count, ...
  (a strided split keeps every micro-batch spread over all data shards)."""
  def split(x):
    return jnp.swapaxes(x.reshape(x.shape[0] // count, count, *x.shape[1:]), 0, 1)
  return jax.tree.map(split, batch)


class Preemption:
  """Whether to save and stop at this step boundary: after a SIGTERM to this process (one
  process), or at JAX's preemption sync point, which every process of a multi-process run
  reaches at the same step once any of them was told of a preemption."""

  def __init__(self):
    self._signalled = False
    self._multi_process = jax.process_count() > 1
    self._previous = None
    if not self._multi_process:  # Multi-process: JAX's coordination service watches SIGTERM.
      self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)

  def _on_sigterm(self, signum, frame) -> None:
    del signum, frame
    logging.warning('SIGTERM: saving a checkpoint at the next step boundary, then stopping.')
    self._signalled = True

  def requested(self, step: int) -> bool:
    if self._multi_process:
      return multihost_utils.reached_preemption_sync_point(step)
    return self._signalled

  def close(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None


def make_train_step(model: nn.Module, tx: optax.GradientTransformation,
                    schedule: optax.Schedule, config: ml_collections.ConfigDict,
                    state_shardings: Any, mesh: Mesh) -> Callable:
  """jit(state, batch) -> (new state, metrics); the state's buffers are donated.

  With config.train.grad_accum_steps = A > 1 the batch is split into A micro-batches whose
  gradients are combined, each weighted by its share of the batch's labelled pixels (exact for
  per-pixel losses such as cross-entropy; BatchNorm statistics then come from micro-batches).
  A step whose loss or gradient is not finite changes nothing but the step count and the
  skipped-step counters.
  """
  base_rng = jax.random.key(config.seed)
  ignore_index, loss_config = config.data.ignore_index, config.loss
  accum_steps = int(config.train.grad_accum_steps)
  if accum_steps < 1 or config.train.batch_size % accum_steps:
    raise ValueError(f'config.train.grad_accum_steps={accum_steps} must be >= 1 and divide '
                     f'config.train.batch_size={config.train.batch_size}.')

  def loss_and_grads(params, batch_stats, batch, dropout_rng):
    def loss_fn(params):
      variables = {'params': params, **({'batch_stats': batch_stats} if batch_stats else {})}
      outputs, updated = model.apply(variables, batch['image'], train=True,
                                     rngs={'dropout': dropout_rng}, mutable=['batch_stats'])
      loss, parts = losses.total_loss(outputs, batch['label'], loss_config, ignore_index, batch)
      return loss, (updated.get('batch_stats', {}), parts)
    return jax.value_and_grad(loss_fn, has_aux=True)(params)

  def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    dropout_rng = jax.random.fold_in(jax.random.fold_in(base_rng, 1), state.step)
    if accum_steps == 1:
      (loss, (batch_stats, parts)), grads = loss_and_grads(state.params, state.batch_stats,
                                                           batch, dropout_rng)
    else:
      micro = _micro_batches(batch, accum_steps)
      labelled = jnp.sum(micro['label'] != ignore_index, axis=tuple(range(1, micro['label'].ndim)))
      shares = labelled / jnp.maximum(jnp.sum(labelled), 1)

      def accumulate(carry, inputs):
        batch_stats, grads, loss, parts = carry
        micro_batch, share, k = inputs
        (micro_loss, (batch_stats, micro_parts)), micro_grads = loss_and_grads(
            state.params, batch_stats, micro_batch, jax.random.fold_in(dropout_rng, k))
        add = lambda total, x: total + share * x
        return (batch_stats, jax.tree.map(add, grads, micro_grads), add(loss, micro_loss),
                jax.tree.map(add, parts, micro_parts)), None

      _, (_, first_parts) = jax.eval_shape(
          loss_and_grads, state.params, state.batch_stats,
          jax.tree.map(lambda x: x[0], micro), dropout_rng)[0]
      zeros = lambda tree: jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), tree)
      carry = (state.batch_stats, zeros(state.params), jnp.zeros((), jnp.float32),
               zeros(first_parts))
      (batch_stats, grads, loss, parts), _ = jax.lax.scan(
          accumulate, carry, (micro, shares, jnp.arange(accum_steps)))
    grad_norm = optax.global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    updated = (optax.apply_updates(state.params, updates), batch_stats, opt_state)
    kept = (state.params, state.batch_stats, state.opt_state)
    params, batch_stats, opt_state = jax.tree.map(
        lambda new, old: jnp.where(finite, new, old), updated, kept)
    new_state = state.replace(
        step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state,
        skipped_steps=state.skipped_steps + (~finite).astype(jnp.int32),
        bad_streak=jnp.where(finite, 0, state.bad_streak + 1))
    step_metrics = {'loss': loss, 'grad_norm': grad_norm,
                    'learning_rate': schedule(state.step), **parts,
                    'skipped_steps': new_state.skipped_steps, 'bad_streak': new_state.bad_streak}
    return new_state, step_metrics

  return jax.jit(train_step,
                 in_shardings=(state_shardings,
                               sharding.batch_sharding(mesh, tuple(config.mesh.data_axes))),
                 out_shardings=(state_shardings, sharding.replicated(mesh)),
                 donate_argnums=(0,))


def write_eval_results(result: evaluate.EvalResult, step: int, split: str, source: Any,
                       workdir: str, writer: metric_writers.MetricWriter,
                       ignore_index: int) -> None:
  """Per-class table to the log, scalars and overlays to TensorBoard, one line to
  metrics.jsonl, the confusion matrix to .npy and as a heat map PNG, and overlays to PNG
  (process 0 writes files)."""
  summary = result.metrics
  logging.info('Evaluation at step %d on %s:\n%s', step, split,
               metrics.format_table(summary, source.class_names))
  writer.write_scalars(step, {f'{split}/{k}': summary[k] for k in metrics.SUMMARY_KEYS})
  panels = {}
  for index, pred in result.examples:
    example = source[index]
    panels[f'{split}/overlay/{source.name(index)}'] = visualize.overlay_panel(
        example['image'], example['label'], pred, source.palette, ignore_index)
  if panels:
    writer.write_images(step, {k: v[None] for k, v in panels.items()})
  if jax.process_index() != 0:
    return
  for key, panel in panels.items():
    name = key.rsplit('/', 1)[-1]
    visualize.save_png(os.path.join(workdir, 'predictions', f'step_{step:07d}', f'{name}.png'),
                       panel)
  confusion_path = os.path.join(workdir, f'confusion_{split}_step_{step:07d}')
  np.save(confusion_path + '.npy', result.confusion)
  visualize.save_confusion_heatmap(confusion_path + '.png', result.confusion, source.class_names,
                                   f'{split}, step {step}: row-normalised confusion')
  record = {'step': step, 'split': split,
            **{k: summary[k] for k in metrics.SUMMARY_KEYS},
            'IoU': summary['per_class_IoU']}
  with open(os.path.join(workdir, 'metrics.jsonl'), 'a') as f:
    f.write(json.dumps(record) + '\n')


def run_evaluation(eval_step: Callable, state: TrainState, config: ml_collections.ConfigDict,
                   source: Any, mesh: Mesh, workdir: str,
                   writer: metric_writers.MetricWriter, step: int) -> dict:
  start = time.time()
  result = evaluate.evaluate(eval_step, state.variables(), config, source, mesh)
  logging.info('Evaluation took %.1f s.', time.time() - start)
  write_eval_results(result, step, config.data.eval_split, source, workdir, writer,
                     config.data.ignore_index)
  writer.flush()
  return result.metrics


def make_writer(workdir: str) -> metric_writers.MetricWriter:
  """TensorBoard and log output on process 0; a writer that writes nothing elsewhere."""
  if jax.process_index() == 0:
    return metric_writers.create_default_writer(workdir)
  return metric_writers.MultiWriter([])


def check_config(config: ml_collections.ConfigDict) -> None:
  """Fails early, naming the field, on loss and evaluation settings that cannot work."""
  losses.check_loss_terms(config.loss.main, 'config.loss.main')
  losses.check_loss_terms(config.loss.aux, 'config.loss.aux')
  detail_weights = config.loss.detail_weights
  if (len(detail_weights) != 2
      or not all(isinstance(w, (int, float)) and w >= 0 for w in detail_weights)):
    raise ValueError(f'config.loss.detail_weights={detail_weights!r}; expected (BCE weight, '
                     'Dice weight), two numbers >= 0.')
  evaluate.check_eval_config(config.eval)
  weighting = config.loss.class_weighting
  if weighting not in ('', 'median_frequency', 'enet'):
    raise ValueError(f'config.loss.class_weighting={weighting!r}; expected median_frequency, '
                     "enet or ''.")
  if weighting and config.loss.class_weights:
    raise ValueError('config.loss.class_weighting and config.loss.class_weights are both set; '
                     'give one of them.')
  if config.model.pretrained and config.model.backbone_pretrained:
    raise ValueError('config.model.pretrained (whole model) and config.model.backbone_pretrained '
                     'are both set; give one of them.')
  if config.data.channel_order not in ('rgb', 'bgr'):
    raise ValueError(f'config.data.channel_order={config.data.channel_order!r}; expected rgb '
                     'or bgr.')


def resolve_class_weighting(config: ml_collections.ConfigDict) -> None:
  """With config.loss.class_weighting, sets config.loss.class_weights from the pixel counts of
  the training split (read once, here, on every process alike)."""
  weighting = config.loss.class_weighting
  if not weighting:
    return
  report = check.check_split(config, config.data.train_split, workers=config.data.num_workers)
  if report['problems'] and not config.data.skip_bad_examples:
    raise ValueError(f'config.loss.class_weighting={weighting!r}: the training split has bad '
                     f'examples, e.g. {report["problems"][0]}')
  weights = tuple(float(w) for w in report['class_weights'][weighting])
  logging.info('Class weights (%s) from %d training labels: %s', weighting, report['examples'],
               ', '.join(f'{n}={w:.4f}' for n, w in zip(report['class_names'], weights)))
  config.loss.class_weights = weights


def build_model_and_optimizer(config: ml_collections.ConfigDict, num_classes: int):
  """The model of config.model with num_classes outputs, its optimizer and schedule."""
  model = models.build_model(config.model, num_classes)
  input_hw = tuple(config.augment.crop_size)
  abstract_params = jax.eval_shape(
      lambda: model.init({'params': jax.random.key(0), 'dropout': jax.random.key(0)},
                         jnp.zeros((1, *input_hw, 3)), train=False))['params']
  tx, schedule = optimizers.make_optimizer(config, abstract_params)
  return model, tx, schedule


def setup(config: ml_collections.ConfigDict, workdir: str):
  """What training, evaluation and benchmarking share: mesh, sources, model, optimizer."""
  del workdir
  check_config(config)
  use_pretrained_preprocessing(config)
  mesh = sharding.make_mesh(config.mesh)
  train_source = datasets.make_source(config.data, config.data.train_split, config.seed)
  eval_source = datasets.make_source(config.data, config.data.eval_split, config.seed)
  model, tx, schedule = build_model_and_optimizer(config, train_source.num_classes)
  return mesh, train_source, eval_source, model, tx, schedule


def build_for_inference(config: ml_collections.ConfigDict, num_classes: int):
  """Mesh, model and optimizer (to restore checkpoints) without reading any dataset."""
  check_config(config)
  use_pretrained_preprocessing(config)
  mesh = sharding.make_mesh(config.mesh)
  model, tx, _ = build_model_and_optimizer(config, num_classes)
  return mesh, model, tx


PRETRAINED_FIELDS = (('pretrained', 'model'), ('backbone_pretrained', 'backbone'))


def load_pretrained(state: TrainState, state_shardings: Any,
                    model_config: ml_collections.ConfigDict,
                    model: nn.Module | None = None) -> TrainState:
  """state with the weights of config.model.pretrained (the whole model) or
  config.model.backbone_pretrained (its backbone); see semseg_jax.convert. `model` (the module
  of state) lets a Hugging Face config.json be checked against it."""
  for field, part in PRETRAINED_FIELDS:
    source = model_config[field]
    if not source:
      continue
    variables = {'params': state.params, 'batch_stats': state.batch_stats}
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), variables)
    loaded = convert.load(source, abstract, part, f'config.model.{field}', model)
    logging.info('config.model.%s: %d arrays from %s (%s).', field, len(loaded.arrays), source,
                 loaded.family)
    variables = convert.merge(variables, loaded.arrays, jax.device_put,
                              {'params': state_shardings.params,
                               'batch_stats': state_shardings.batch_stats})
    state = state.replace(params=variables['params'], batch_stats=variables['batch_stats'])
  return state


def use_pretrained_preprocessing(config: ml_collections.ConfigDict) -> None:
  """Sets config.data.{mean, std, channel_order} to what the pretrained weights expect
  (config.model.pretrained_preprocessing), warning where that changes them."""
  if not config.model.pretrained_preprocessing:
    return
  for field, _ in PRETRAINED_FIELDS:
    source = config.model[field]
    expected = convert.preprocessing_of(source, f'config.model.{field}') if source else None
    if not expected:
      continue
    for key in ('mean', 'std', 'channel_order'):
      value = expected[key] if key == 'channel_order' else tuple(float(v) for v in expected[key])
      current = config.data[key] if key == 'channel_order' else tuple(
          float(v) for v in config.data[key])
      if not (value == current if key == 'channel_order' else np.allclose(value, current)):
        logging.warning('config.data.%s=%s -> %s: what the weights of config.model.%s expect '
                        '(config.model.pretrained_preprocessing=False keeps the config\'s).',
                        key, current, value, field)
        config.data[key] = value


def restore_checkpoint(config: ml_collections.ConfigDict, workdir: str, model: nn.Module,
                       tx: optax.GradientTransformation, mesh: Mesh) -> tuple[TrainState, int]:
  """The train state at config.eval.checkpoint_step (-1: the latest) in workdir; with no
  checkpoint there, the weights of config.model.pretrained (step 0)."""
  manager = checkpointing.make_manager(workdir, config)
  step = config.eval.checkpoint_step
  if step < 0:
    step = manager.latest_step()
  state, shardings = create_train_state(model, tx, jax.random.key(config.seed),
                                        tuple(config.augment.crop_size), mesh,
                                        config.mesh.partition_rules)
  if step is None and config.model.pretrained:
    logging.info('No checkpoint in %s: using config.model.pretrained=%s.', workdir,
                 config.model.pretrained)
    return load_pretrained(state, shardings, config.model, model), 0
  if step is None or step not in manager.all_steps():
    raise FileNotFoundError(f'No checkpoint at step {config.eval.checkpoint_step} '
                            f'(config.eval.checkpoint_step) in '
                            f'{os.path.join(workdir, "checkpoints")}; available: '
                            f'{sorted(manager.all_steps())}; config.model.pretrained is '
                            f'{config.model.pretrained!r}.')
  return checkpointing.restore(manager, step, state), step


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains for config.train.num_steps (resuming from the latest checkpoint in workdir),
  evaluating every config.train.eval_every steps and at the end. Returns the last metrics."""
  os.makedirs(workdir, exist_ok=True)
  mesh, train_source, eval_source, model, tx, schedule = setup(config, workdir)
  resolve_class_weighting(config)
  writer = make_writer(workdir)
  state, state_shardings = create_train_state(model, tx, jax.random.key(config.seed),
                                              tuple(config.augment.crop_size), mesh,
                                              config.mesh.partition_rules)
  parameter_overview.log_parameter_overview(state.params)
  num_params = sum(x.size for x in jax.tree.leaves(state.params))
  logging.info('Model %s-%s: %d parameters.', config.model.name, config.model.variant,
               num_params)
  writer.write_hparams({'num_params': num_params, **flatten_config(config)})

  train_iter = iter(pipeline.train_dataset(config, train_source, jax.process_index(),
                                           jax.process_count()))
  manager = checkpointing.make_manager(workdir, config)
  if manager.latest_step() is not None:
    logging.info('Resuming from checkpoint at step %d.', manager.latest_step())
    state = checkpointing.restore(manager, manager.latest_step(), state, train_iter)
  elif config.model.pretrained or config.model.backbone_pretrained:
    state = load_pretrained(state, state_shardings, config.model, model)
  start_step = int(jax.device_get(state.step))

  train_step = make_train_step(model, tx, schedule, config, state_shardings, mesh)
  eval_step = evaluate.make_eval_step(model, config.eval, mesh, tuple(config.mesh.data_axes),
                                      eval_source.num_classes, config.data.ignore_index)
  batch_sharding = sharding.batch_sharding(mesh, tuple(config.mesh.data_axes))
  num_steps = config.train.num_steps
  bad_examples = None
  if config.data.skip_bad_examples:
    bad_examples = pipeline.BadExampleCounter(len(train_source), jax.process_count(),
                                              config.data.max_bad_fraction,
                                              config.data.train_split)
  report = periodic_actions.ReportProgress(num_train_steps=num_steps, writer=writer)
  hooks = [report] if jax.process_index() == 0 else []
  pending_metrics, last_metrics = [], {}
  preemption = Preemption()
  skipped = int(jax.device_get(state.skipped_steps))
  try:
    for step in range(start_step + 1, num_steps + 1):
      with jax.profiler.StepTraceAnnotation('train', step_num=step):
        batch = next(train_iter)
        if bad_examples is not None:
          bad_examples.update(batch.pop('skipped'))
        batch = sharding.to_global(batch, batch_sharding)
        state, step_metrics = train_step(state, batch)
      pending_metrics.append(step_metrics)
      for hook in hooks:
        hook(step)
      if step % config.train.log_every == 0 or step == num_steps:
        fetched = jax.device_get(pending_metrics)  # The only host sync in the loop.
        pending_metrics = []
        skipped_before = skipped
        skipped, bad_streak = int(fetched[-1]['skipped_steps']), int(fetched[-1]['bad_streak'])
        if skipped > skipped_before:
          logging.warning('Step %d: %d step(s) with a non-finite loss or gradient skipped so '
                          'far (state unchanged by them); %d in a row now.', step, skipped,
                          bad_streak)
        if bad_streak >= config.train.max_bad_steps:
          raise FloatingPointError(
              f'{bad_streak} consecutive steps up to step {step} had a non-finite loss or '
              f'gradient (limit config.train.max_bad_steps={config.train.max_bad_steps}); '
              f'last metrics: {fetched[-1]}.')
        good = [m for m in fetched if m['bad_streak'] == 0] or fetched
        means = {k: float(np.mean([m[k] for m in good])) for k in good[0]
                 if k not in ('skipped_steps', 'bad_streak')}
        writer.write_scalars(step, {**{f'train/{k}': v for k, v in means.items()},
                                    'train/skipped_steps': skipped})
      preempted = preemption.requested(step)
      if step % config.checkpoint.every_steps == 0 or step == num_steps or preempted:
        checkpointing.save(manager, step, state, train_iter)
      if preempted:
        manager.wait_until_finished()
        logging.warning('Preemption: saved the checkpoint of step %d and stopped; rerun the '
                        'same command to resume from it.', step)
        break
      if step % config.train.eval_every == 0 or step == num_steps:
        with report.timed('eval'):
          last_metrics = run_evaluation(eval_step, state, config, eval_source, mesh, workdir,
                                        writer, step)
  finally:
    manager.wait_until_finished()  # An in-flight save completes even if training crashed.
    writer.flush()
    preemption.close()
  if start_step >= num_steps:
    logging.info('Checkpoint is already at step %d >= train.num_steps.', start_step)
  return last_metrics


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """--mode=eval: restores config.eval.checkpoint_step (or the latest) and evaluates it."""
  mesh, _, eval_source, model, tx, _ = setup(config, workdir)
  state, step = restore_checkpoint(config, workdir, model, tx, mesh)
  writer = make_writer(workdir)
  eval_step = evaluate.make_eval_step(model, config.eval, mesh, tuple(config.mesh.data_axes),
                                      eval_source.num_classes, config.data.ignore_index)
  return run_evaluation(eval_step, state, config, eval_source, mesh, workdir, writer, step)


def flatten_config(config: ml_collections.ConfigDict) -> dict:
  """Config fields as 'a.b' -> scalar or string, for TensorBoard hparams."""
  flat = {}
  def visit(prefix, node):
    for key, value in node.items():
      name = f'{prefix}{key}'
      if isinstance(value, ml_collections.ConfigDict):
        visit(f'{name}.', value)
      else:
        flat[name] = value if isinstance(value, (int, float, str, bool)) else str(value)
  visit('', config)
  return flat
