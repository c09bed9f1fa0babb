"""The jitted train step: forward, the configured losses, gradients (accumulated over
micro-batches if asked), the optimizer update, and the skipping of non-finite steps."""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh

from semseg_jax import losses
from semseg_jax import sharding
from semseg_jax.train_state import TrainState


def micro_batches(batch: dict, count: int, unit: int = 1) -> dict:
  """[B, ...] arrays -> [count, B / count, ...]. The batch is cut into chunks of `unit`
  consecutive images (images a loss must see together, e.g. an OHEM group) and chunk j goes to
  micro-batch j % count: a strided split keeps every micro-batch spread over all data shards."""
  def split(x):
    chunks = x.reshape(x.shape[0] // (count * unit), count, unit, *x.shape[1:])
    return jnp.swapaxes(chunks, 0, 1).reshape(count, x.shape[0] // count, *x.shape[1:])
  return jax.tree.map(split, batch)


def global_norm(tree: Any, whole_on_each_device: bool) -> jax.Array:
  """The L2 norm of all leaves together (summed in float32; optax.tree.norm's value, to float
  rounding).

  With every leaf whole on each device it is one reduction over the leaves concatenated: one
  kernel instead of one per parameter array, and XLA's compile time (and on accelerators the
  launch count) follows the number of kernels: a tiny SegFormer's train step drops from ~1,350
  to ~1,110 on CPU. Leaves split over devices (FSDP) are reduced one by one, since concatenating
  them would gather them.
  """
  leaves = [leaf.astype(jnp.float32) for leaf in jax.tree.leaves(tree)]
  if whole_on_each_device and len(leaves) > 1:
    leaves = [jnp.concatenate([jnp.ravel(leaf) for leaf in leaves])]
  return jnp.sqrt(sum((jnp.sum(leaf * leaf) for leaf in leaves), jnp.zeros((), jnp.float32)))


def check_accumulation(config: ml_collections.ConfigDict) -> None:
  """Fails naming the field when config.train.grad_accum_steps cannot split the batch, or would
  change the objective of a loss term the config does not accept as approximate."""
  accum_steps, batch_size = int(config.train.grad_accum_steps), config.train.batch_size
  unit = losses.accumulation_unit(config.loss)
  if accum_steps < 1 or batch_size % (accum_steps * unit):
    raise ValueError(f'config.train.grad_accum_steps={accum_steps} must be >= 1 and divide '
                     f'config.train.batch_size={batch_size} into micro-batches of whole '
                     f'groups of {unit} image(s) (the OHEM terms\' images_per_group).')
  if accum_steps > 1 and not config.train.accept_inexact_accumulation:
    inexact = losses.inexact_terms(config.loss, batch_size // accum_steps)
    if inexact:
      raise ValueError(
          f'config.train.grad_accum_steps={accum_steps}: these loss terms are computed over the '
          f'whole batch at once, so micro-batches would change what they compute: '
          f'{"; ".join(inexact)}. Use their per-image form (per_image=True; OHEM: '
          'images_per_group dividing the micro-batch), or set '
          'config.train.accept_inexact_accumulation=True to accept each micro-batch computing '
          'them over its own images.')


def make_train_step(model: nn.Module, tx: optax.GradientTransformationExtraArgs,
                    schedule: optax.Schedule, config: ml_collections.ConfigDict,
                    state_shardings: Any, mesh: Mesh) -> Callable:
  """jit(state, batch) -> (new state, metrics); the state's buffers are donated.

  With config.train.grad_accum_steps = A > 1 the batch is split into A micro-batches whose
  gradients are summed, each loss term scaled by the micro-batch's share of what the term
  averages over (labelled pixels, or images: see losses.LOSSES), so that the sum is the full
  batch's gradient (BatchNorm statistics then come from micro-batches). A step whose loss or
  gradient is not finite changes nothing but the step count and the skipped-step counters; it
  still consumes its step of the learning-rate schedule.
  """
  base_rng = jax.random.key(config.seed)
  ignore_index, loss_config = config.data.ignore_index, config.loss
  check_accumulation(config)
  accum_steps = int(config.train.grad_accum_steps)
  unit = losses.accumulation_unit(loss_config)
  params_whole = all(s.is_fully_replicated for s in jax.tree.leaves(state_shardings.params))

  def loss_and_grads(params, batch_stats, batch, dropout_rng, shares=None):
    def loss_fn(params):
      variables = {'params': params, **({'batch_stats': batch_stats} if batch_stats else {})}
      outputs, updated = model.apply(variables, batch['image'], train=True,
                                     rngs={'dropout': dropout_rng}, mutable=['batch_stats'])
      loss, parts = losses.total_loss(outputs, batch, loss_config, ignore_index, shares)
      return loss, (updated.get('batch_stats', {}), parts)
    return jax.value_and_grad(loss_fn, has_aux=True)(params)

  def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    dropout_rng = jax.random.fold_in(jax.random.fold_in(base_rng, 1), state.step)
    if accum_steps == 1:
      (loss, (batch_stats, parts)), grads = loss_and_grads(state.params, state.batch_stats,
                                                           batch, dropout_rng)
    else:
      micro = micro_batches(batch, accum_steps, unit)
      labelled = jnp.sum(micro['label'] != ignore_index, axis=tuple(range(1, micro['label'].ndim)))
      shares = {losses.LABELLED_SHARE: labelled / jnp.maximum(jnp.sum(labelled), 1),
                losses.EQUAL_SHARE: jnp.full((accum_steps,), 1.0 / accum_steps, jnp.float32)}

      def accumulate(carry, inputs):
        batch_stats, grads, loss, parts = carry
        micro_batch, micro_shares, k = inputs
        (micro_loss, (batch_stats, micro_parts)), micro_grads = loss_and_grads(
            state.params, batch_stats, micro_batch, jax.random.fold_in(dropout_rng, k),
            micro_shares)
        add = lambda total, x: total + x
        return (batch_stats, jax.tree.map(add, grads, micro_grads), loss + micro_loss,
                jax.tree.map(add, parts, micro_parts)), None

      first = jax.tree.map(lambda x: x[0], (micro, shares))
      _, (_, first_parts) = jax.eval_shape(
          loss_and_grads, state.params, state.batch_stats, first[0], dropout_rng, first[1])[0]
      zeros = lambda tree: jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), tree)
      carry = (state.batch_stats, zeros(state.params), jnp.zeros((), jnp.float32),
               zeros(first_parts))
      (batch_stats, grads, loss, parts), _ = jax.lax.scan(
          accumulate, carry, (micro, shares, jnp.arange(accum_steps)))
    grad_norm = global_norm(grads, params_whole)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    updates, opt_state = tx.update(grads, state.opt_state, state.params, step=state.step)
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
