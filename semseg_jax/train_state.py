"""The train state and what makes one, shared by training, evaluation, prediction and the
benchmark: the model and optimizer of a config, a fresh state created into its shardings, a
checkpoint restored, pretrained weights loaded."""

import os
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from absl import logging
from jax.sharding import Mesh

from semseg_jax import checkpointing
from semseg_jax import convert
from semseg_jax import models
from semseg_jax import optimizers
from semseg_jax import sharding
from semseg_jax.models import layers


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


def build_model_and_optimizer(config: ml_collections.ConfigDict, num_classes: int
                              ) -> tuple[nn.Module, optax.GradientTransformationExtraArgs,
                                         optax.Schedule]:
  """The model of config.model with num_classes outputs, its optimizer and schedule."""
  tx, schedule = optimizers.make_optimizer(config)
  return models.build_model(config.model, num_classes), tx, schedule


def _initial_state(model: nn.Module, tx: optax.GradientTransformation,
                   input_hw: tuple[int, int]):
  """rng -> the initial TrainState (the function that a fresh state is made by)."""
  def init(rng):
    param_rng, dropout_rng = jax.random.split(rng)
    images = jnp.zeros((1, *input_hw, 3), jnp.float32)
    # The forward pass that init runs only declares the variables (its outputs are dropped):
    # traced with XLA's convolutions, whose shorter form traces 2-3x faster than the CPU
    # lowerings (SegNeXt-L: 3.0 -> 0.9 s). The variables and their values are the same.
    with layers.conv_lowering('xla'):
      variables = model.init({'params': param_rng, 'dropout': dropout_rng}, images, train=False)
    params = variables['params']
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get('batch_stats', {}), opt_state=tx.init(params),
                      skipped_steps=jnp.zeros((), jnp.int32), bad_streak=jnp.zeros((), jnp.int32))
  return init


def plan_train_state(model: nn.Module, tx: optax.GradientTransformation,
                     input_hw: tuple[int, int], mesh: Mesh, partition_rules: Any = ()
                     ) -> tuple[TrainState, Any, Callable[[jax.Array], TrainState]]:
  """(the state's shapes and dtypes as jax.ShapeDtypeStruct leaves carrying their shardings,
  the shardings, fresh(rng) -> a newly initialised state).

  The shardings are replicated, or by config.mesh.partition_rules (see sharding.leaf_spec). A
  checkpoint restores onto the abstract state, so resuming and --mode=eval never initialise
  weights they would overwrite; `fresh` runs the init, jitted straight into the shardings, from
  the same trace of the model's init (jax reuses the trace of the same function object). The
  key is an argument of the jitted init, so that states of other seeds reuse its compilation.
  """
  init = _initial_state(model, tx, input_hw)
  shapes = jax.eval_shape(init, jax.random.key(0))
  shardings = sharding.state_shardings(shapes, mesh, partition_rules)
  abstract = jax.tree.map(lambda leaf, s: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=s),
                          shapes, shardings)
  return abstract, shardings, lambda rng: _fresh_state(init, shardings, rng)


def _fresh_state(init: Callable[[jax.Array], TrainState], shardings: Any,
                 rng: jax.Array) -> TrainState:
  return jax.jit(init, out_shardings=shardings)(rng)


def abstract_train_state(model: nn.Module, tx: optax.GradientTransformation,
                         input_hw: tuple[int, int], mesh: Mesh, partition_rules: Any = ()
                         ) -> tuple[TrainState, Any]:
  """The initial state's shapes, dtypes and shardings (jax.ShapeDtypeStruct leaves; nothing
  is computed), and the shardings: what lowering a step or restoring a checkpoint needs."""
  return plan_train_state(model, tx, input_hw, mesh, partition_rules)[:2]


def create_train_state(model: nn.Module, tx: optax.GradientTransformation, rng: jax.Array,
                       input_hw: tuple[int, int], mesh: Mesh,
                       partition_rules: Any = ()) -> tuple[TrainState, Any]:
  """A newly initialised state and its shardings (see plan_train_state); the model's init is
  traced once."""
  _, shardings, fresh = plan_train_state(model, tx, input_hw, mesh, partition_rules)
  return fresh(rng), shardings


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


def restore_for_inference(config: ml_collections.ConfigDict, workdir: str, model: nn.Module,
                          tx: optax.GradientTransformation, mesh: Mesh) -> tuple[TrainState, int]:
  """The train state at config.eval.checkpoint_step (-1: the latest) in workdir; with no
  checkpoint there, the weights of config.model.pretrained (step 0)."""
  manager = checkpointing.make_manager(workdir, config)
  step = config.eval.checkpoint_step
  abstract, shardings, fresh = plan_train_state(model, tx, tuple(config.augment.crop_size),
                                                mesh, config.mesh.partition_rules)
  if step < 0:  # The newest checkpoint that reads.
    latest = checkpointing.restore_latest(manager, abstract)
    if latest is not None:
      return latest
    step = None
  if step is None and config.model.pretrained:
    logging.info('No checkpoint in %s: using config.model.pretrained=%s.', workdir,
                 config.model.pretrained)
    state = fresh(jax.random.key(config.seed))
    return load_pretrained(state, shardings, config.model, model), 0
  if step is None or step not in manager.all_steps():
    raise FileNotFoundError(f'No checkpoint at step {config.eval.checkpoint_step} '
                            f'(config.eval.checkpoint_step) in '
                            f'{os.path.join(workdir, "checkpoints")}; available: '
                            f'{sorted(manager.all_steps())}; config.model.pretrained is '
                            f'{config.model.pretrained!r}.')
  try:
    return checkpointing.restore(manager, step, abstract), step
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f'Checkpoint {manager.directory / str(step)} (config.eval.checkpoint_step) '
                     f'cannot be read: {type(e).__name__}: {e}') from e
