"""Monte-Carlo dropout inference (Gal & Ghahramani 2016; Bayesian SegNet, Kendall et al. 2017):
dropout kept on at test time, BatchNorm on its running statistics, N stochastic passes; the
prediction is the mean of the sampled softmax probabilities and the per-pixel model uncertainty
is their variance averaged over classes (Bayesian SegNet, Sec. 3.2).

Works for any model that has a boolean field `mc_dropout` making its dropout layers sample when
train=False: Bayesian SegNet (models.segnet) and the VGG FCNs (models.fcn).
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def mc_dropout_probabilities(model: nn.Module, variables: Any, images: jax.Array,
                             rng: jax.Array, num_samples: int) -> tuple[jax.Array, jax.Array]:
  """Monte-Carlo dropout inference (Bayesian SegNet, Sec. 3.2 "Probabilistic Outputs").

  Runs `num_samples` forward passes of `model` with its dropout sampling (mc_dropout=True,
  train=False, so BatchNorm uses its running averages), sample k with the dropout key
  `jax.random.split(rng, num_samples)[k]`, and returns
    mean_probs [N, h, w, C] float32: the mean of the sampled softmax probabilities (the
      segmentation is its argmax);
    uncertainty [N, h, w] float32: the model uncertainty, the variance over the samples of each
      class's softmax probability (population variance, 1/T), averaged over the classes: the
      paper's uncertainty "averaged across all classes" (Fig. 1), computed as
      Scripts/test_bayesian_segnet.py does (np.var over samples, then mean over classes).
  The samples are accumulated one at a time (a scan with Welford's update), so memory does not
  grow with num_samples. Jit it with the model and num_samples static.
  """
  if not any(field.name == 'mc_dropout' for field in dataclasses.fields(model)):
    raise ValueError(f'{type(model).__name__} has no `mc_dropout` field, so its dropout cannot '
                     'be sampled at inference; use a model that has one (e.g. Bayesian SegNet).')
  if num_samples < 1:
    raise ValueError(f'num_samples={num_samples}; expected at least 1.')
  sampler = model.clone(mc_dropout=True)

  def probabilities(key: jax.Array) -> jax.Array:
    logits = sampler.apply(variables, images, train=False, rngs={'dropout': key})['logits']
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

  def accumulate(carry, sample):
    mean, m2 = carry
    count, key = sample
    probs = probabilities(key)
    delta = probs - mean
    mean = mean + delta / count
    return (mean, m2 + delta * (probs - mean)), None

  shape = jax.eval_shape(probabilities, rng).shape
  zeros = jnp.zeros(shape, jnp.float32)
  counts = jnp.arange(1, num_samples + 1, dtype=jnp.float32)
  (mean, m2), _ = jax.lax.scan(accumulate, (zeros, zeros),
                               (counts, jax.random.split(rng, num_samples)))
  return mean, jnp.mean(m2 / num_samples, axis=-1)


@dataclasses.dataclass(frozen=True)
class MonteCarloDropout:
  """Stands in for a model at evaluation: `apply(variables, images, train=False)` returns
  {'logits': log of the mean probabilities, 'aux': [], 'uncertainty': [N, h, w]}, so that the
  argmax and the averaging of probabilities over test views work unchanged. The masks come from
  a fixed seed: evaluation is deterministic."""
  model: nn.Module
  num_samples: int
  seed: int = 0

  def apply(self, variables: Any, images: jax.Array, train: bool = False) -> dict[str, Any]:
    if train:
      raise ValueError('MonteCarloDropout is for inference only.')
    mean, uncertainty = mc_dropout_probabilities(self.model, variables, images,
                                                 jax.random.key(self.seed), self.num_samples)
    return {'logits': jnp.log(jnp.maximum(mean, 1e-30)), 'aux': [], 'uncertainty': uncertainty}
