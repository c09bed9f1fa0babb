"""--mode=train: the training loop, read top to bottom.

mesh -> input (grain) -> model and optimizer -> state (fresh, resumed or pretrained) -> the
jitted train step -> evaluators -> the loop: steps, logs, checkpoints, evaluations, preemption.
Imported by main.py only; what other modes share with it lives in train_state.py,
train_step.py and the evaluators package.
"""

import os

import jax
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers
from clu import parameter_overview
from clu import periodic_actions

from semseg_jax import checkpointing
from semseg_jax import evaluators
from semseg_jax import logs
from semseg_jax import sharding
from semseg_jax import train_state
from semseg_jax import train_step
from semseg_jax.data import datasets
from semseg_jax.data import pipeline
from semseg_jax.preemption import Preemption


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       writer: metric_writers.MetricWriter) -> dict[str, dict]:
  """Trains for config.train.num_steps, resuming from the latest checkpoint in workdir, and runs
  each evaluator of config.evals when it is due. Returns the last results of each evaluator."""
  os.makedirs(workdir, exist_ok=True)

  ##############################################################################################
  # Mesh                                                                                      #
  ##############################################################################################
  mesh = sharding.make_mesh(config.mesh)
  batch_sharding = sharding.batch_sharding(mesh, tuple(config.mesh.data_axes))

  ##############################################################################################
  # Input: this process's share of every global batch, resumable at any batch                #
  ##############################################################################################
  train_source = datasets.make_source(config.data, config.data.train_split, config.seed)
  train_iter = iter(pipeline.train_dataset(config, train_source, jax.process_index(),
                                           jax.process_count()))
  bad_examples = None
  if config.data.skip_bad_examples:
    bad_examples = pipeline.BadExampleCounter(len(train_source), jax.process_count(),
                                              config.data.max_bad_fraction,
                                              config.data.train_split)

  ##############################################################################################
  # Model and optimizer                                                                       #
  ##############################################################################################
  num_classes = train_source.num_classes
  model, tx, schedule = train_state.build_model_and_optimizer(config, num_classes)

  ##############################################################################################
  # State: resumed from the latest checkpoint, or fresh (and pretrained weights loaded)        #
  ##############################################################################################
  abstract_state, state_shardings, fresh_state = train_state.plan_train_state(
      model, tx, tuple(config.augment.crop_size), mesh, config.mesh.partition_rules)
  num_params = sum(x.size for x in jax.tree.leaves(abstract_state.params))
  logging.info('Model %s-%s: %d parameters.', config.model.name, config.model.variant,
               num_params)
  writer.write_hparams({'num_params': num_params, **logs.flatten_config(config)})
  manager = checkpointing.make_manager(workdir, config, owner=True)
  resumed = checkpointing.restore_latest(manager, abstract_state, train_iter, owner=True)
  if resumed is not None:
    state, resumed_step = resumed
    logging.info('Resumed from the checkpoint of step %d.', resumed_step)
  else:
    state = fresh_state(jax.random.key(config.seed))
    if config.model.pretrained or config.model.backbone_pretrained:
      state = train_state.load_pretrained(state, state_shardings, config.model, model)
  parameter_overview.log_parameter_overview(state.params)
  start_step = int(jax.device_get(state.step))

  ##############################################################################################
  # The train step                                                                            #
  ##############################################################################################
  step_fn = train_step.make_train_step(model, tx, schedule, config, state_shardings, mesh)

  ##############################################################################################
  # Evaluators                                                                                #
  ##############################################################################################
  evals = evaluators.from_config(config, model, mesh, workdir, writer, num_classes)

  ##############################################################################################
  # The loop                                                                                  #
  ##############################################################################################
  num_steps = config.train.num_steps
  report = periodic_actions.ReportProgress(num_train_steps=num_steps, writer=writer)
  hooks = [report] if jax.process_index() == 0 else []
  pending_metrics, results = [], {}
  preemption = Preemption()
  skipped = int(jax.device_get(state.skipped_steps))
  try:
    # What the resumed checkpoint's step still owes: evaluations a kill, crash or preemption
    # cut off after the checkpoint was saved (its final evaluation included).
    for name, evaluator in evaluators.owed(evals, start_step, num_steps, workdir):
      logging.info('Running evaluator %s of step %d, which did not complete before.', name,
                   start_step)
      results[name] = evaluator.run(state.variables(), start_step)
    for step in range(start_step + 1, num_steps + 1):
      with jax.profiler.StepTraceAnnotation('train', step_num=step):
        batch = next(train_iter)
        if bad_examples is not None:
          bad_examples.update(batch.pop('skipped'))
        state, step_metrics = step_fn(state, sharding.to_global(batch, batch_sharding))
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
        checkpointing.wait(manager)
        logging.warning('Preemption: saved the checkpoint of step %d and stopped; rerun the '
                        'same command to resume from it.', step)
        break

      for name, evaluator, every_steps in evals:
        if evaluators.due(every_steps, step, num_steps):
          with report.timed(f'eval_{name}'):
            results[name] = evaluator.run(state.variables(), step)
  finally:
    checkpointing.wait(manager)  # An in-flight save completes even if training crashed.
    writer.flush()
    preemption.close()
  if start_step >= num_steps:
    logging.info('Checkpoint is already at step %d >= train.num_steps.', start_step)
  return results
