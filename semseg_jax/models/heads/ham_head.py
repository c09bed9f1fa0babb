"""LightHamHead, the decoder of SegNeXt (Guo et al., NeurIPS 2022, Sec. 3.2 and Fig. 3): the
last three MSCAN stages are resized to stride 8, concatenated, squeezed by a 1x1 conv, passed
through a Hamburger (Geng et al., "Is Attention Better Than Matrix Decomposition?", ICLR 2021)
whose "ham" is NMF by multiplicative updates, aligned by a 1x1 conv and classified.

Reference implementation: mmsegmentation 1.x `mmseg/models/decode_heads/ham_head.py`
(LightHamHead, Hamburger, NMF2D), identical in computation to the official
Visual-Attention-Network/SegNeXt `mmseg/models/decode_heads/ham_head.py`.

Head (norm_cfg = GroupNorm(32, eps 1e-5) everywhere, as published; act ReLU):
  squeeze  = 1x1 conv (no bias) -> GN -> ReLU   (sum of stage widths -> ham_channels)
  hamburger: z = ReLU(ham_in(x)), ham_in a 1x1 conv with bias and no norm;
             z = NMF2D(z); z = GN(ham_out(z)), ham_out a 1x1 conv without bias, no act;
             out = ReLU(x + z)
  align    = 1x1 conv (no bias) -> GN -> ReLU   (ham_channels -> channels)
  classifier = Dropout2d(0.1) -> 1x1 conv with bias (mmseg's cls_seg, N(0, 0.01) weights).
Upsampling to the stride-8 grid is bilinear, align_corners=False. Logits at stride 8.

NMF2D (the reference's forward, per sample; S = md_s segments of D = C / S channels, N = H*W;
here everything is written for X^T = [N, D], the NHWC layout):
  bases  B0 ~ U[0, 1)^(D x R), each column L2-normalised (F.normalize over D);
  coef   C = softmax(X^T B, over R)   (inv_t is 1: NMF2D overrides the config's inv_t=100);
  steps  C <- C * (X^T B) / (C B^T B + 1e-6);  B <- B * (X C) / (B C^T C + 1e-6)
         (6 steps when training, 7 at inference);
  final  C <- C * (X^T B) / (C B^T B + 1e-6);  output X^T ~ C B^T.
It runs in float32 whatever the compute dtype (the reference trains in float32; the 1e-6 in the
updates is below bfloat16's resolution).

Choices forced by this codebase's contract (randomness only from the 'dropout' rng; inference
deterministic without an rng) -- the reference draws fresh bases with torch.rand on every call,
in training and at inference alike:
- Training: the bases are drawn from the 'dropout' rng, independently per sample and segment,
  exactly the reference's distribution.
- Inference: the bases are one fixed draw of the same distribution (from eval_bases_key(), a
  threefry key whatever jax's default generator, shared by every sample), so inference is
  deterministic, needs no rng, and a sample's output does not depend on its batch neighbours or
  the batch size. This is the reference's `rand_init=False` form (one stored random draw)
  without storing the draw as a variable; it differs from the reference only in which random
  draw is used (the reference's own predictions vary from run to run with its draws).
- Gradients: the reference backpropagates through all the multiplicative-update steps: the
  official code has `@torch.no_grad()` commented out on `local_inference` and mmseg has none, so
  the HamNet paper's "one-step gradient" is NOT what SegNeXt trains with. `one_step_gradient`
  (default False, as the reference) stops the gradient through the iterations with
  jax.lax.stop_gradient, leaving only the final coefficient update and the reconstruction
  differentiable (HamNet's form).

Rank R (md_r): 16 for T and S; 64 for B and L in the official configs (which leave ham_kwargs at
the default MD_R=64), while mmseg 1.x's B and L configs inherit T's MD_R=16. R holds no
parameters; the constructor in segnext.py follows the official configs (the paper's numbers).

Parameter names are mmseg's.
"""

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models.layers import SegClassifier, bilinear_resize, conv2d

NMF_EPS = 1e-6
EVAL_BASES_SEED = 0


def eval_bases_key() -> jax.Array:
  """The key of the fixed inference bases: threefry by name, so that a model's predictions do
  not change with jax_default_prng_impl."""
  return jax.random.key(EVAL_BASES_SEED, impl='threefry2x32')


def normalized_random_bases(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """U[0, 1) bases of shape [..., D, R], each column scaled to unit L2 norm over D (PyTorch's
  F.normalize(dim=1): divided by max(norm, 1e-12))."""
  bases = jax.random.uniform(key, shape, jnp.float32)
  norm = jnp.sqrt(jnp.sum(bases * bases, axis=-2, keepdims=True))
  return bases / jnp.maximum(norm, 1e-12)


def _update_coef(xt: jax.Array, bases: jax.Array, coef: jax.Array) -> jax.Array:
  """C <- C * (X^T B) / (C (B^T B) + eps); xt [M, N, D], bases [M, D, R], coef [M, N, R]."""
  numerator = jnp.einsum('mnd,mdr->mnr', xt, bases)
  denominator = jnp.einsum('mnr,mrs->mns', coef, jnp.einsum('mdr,mds->mrs', bases, bases))
  return coef * numerator / (denominator + NMF_EPS)


def _update_bases(xt: jax.Array, bases: jax.Array, coef: jax.Array) -> jax.Array:
  """B <- B * (X C) / (B (C^T C) + eps)."""
  numerator = jnp.einsum('mnd,mnr->mdr', xt, coef)
  denominator = jnp.einsum('mdr,mrs->mds', bases, jnp.einsum('mnr,mns->mrs', coef, coef))
  return bases * numerator / (denominator + NMF_EPS)


def nmf_reconstruct(xt: jax.Array, bases: jax.Array, steps: int,
                    one_step_gradient: bool = False) -> jax.Array:
  """The reference's NMF2D on non-negative X^T [M, N, D] from initial bases [M, D, R]: softmax
  init of the coefficients, `steps` multiplicative updates of (coef, bases), one more coef update,
  and the low-rank reconstruction C B^T [M, N, D]."""
  coef = jax.nn.softmax(jnp.einsum('mnd,mdr->mnr', xt, bases), axis=-1)
  for _ in range(steps):
    coef = _update_coef(xt, bases, coef)
    bases = _update_bases(xt, bases, coef)
  if one_step_gradient:
    bases, coef = jax.lax.stop_gradient(bases), jax.lax.stop_gradient(coef)
  coef = _update_coef(xt, bases, coef)
  return jnp.einsum('mnr,mdr->mnd', coef, bases)


class NMF2D(nn.Module):
  """Low-rank (rank `rank`) NMF reconstruction of a non-negative NHWC map, channels split into
  `num_segments` groups of C / S (the reference's MD_S). No parameters."""
  rank: int = 64
  num_segments: int = 1
  train_steps: int = 6
  eval_steps: int = 7
  one_step_gradient: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    n, h, w, c = x.shape
    s, d = self.num_segments, c // self.num_segments
    # [n, h, w, S*D] -> [n*S, N, D]: segment s holds channels s*D .. (s+1)*D - 1, as the
    # reference's view(B * S, D, N) of an NCHW tensor.
    xt = x.astype(jnp.float32).reshape(n, h * w, s, d).transpose(0, 2, 1, 3).reshape(n * s,
                                                                                      h * w, d)
    if train:
      bases = normalized_random_bases(self.make_rng('dropout'), (n * s, d, self.rank))
    else:
      bases = normalized_random_bases(eval_bases_key(), (s, d, self.rank))
      bases = jnp.tile(bases, (n, 1, 1))
    steps = self.train_steps if train else self.eval_steps
    out = nmf_reconstruct(xt, bases, steps, self.one_step_gradient)
    out = out.reshape(n, s, h * w, d).transpose(0, 2, 1, 3).reshape(n, h, w, c)
    return out.astype(x.dtype)


class ConvGNAct(nn.Module):
  """mmcv's ConvModule with a GroupNorm: 1x1 conv -> GN -> activation. Without the norm
  (`use_norm=False`) the conv gets a bias, as ConvModule's bias='auto'."""
  features: int
  use_norm: bool = True
  activation: Callable[[jax.Array], jax.Array] | None = nn.relu
  num_groups: int = 32
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = conv2d(self.features, 1, use_bias=not self.use_norm, dtype=self.dtype, name='conv')(x)
    if self.use_norm:
      x = nn.GroupNorm(num_groups=self.num_groups, epsilon=1e-5, use_fast_variance=False,
                       dtype=self.dtype, name='gn')(x)
    return x if self.activation is None else self.activation(x)


class Hamburger(nn.Module):
  """ReLU(x + GN(ham_out(NMF(ReLU(ham_in(x))))))."""
  ham_channels: int = 512
  rank: int = 64
  num_segments: int = 1
  train_steps: int = 6
  eval_steps: int = 7
  one_step_gradient: bool = False
  num_groups: int = 32
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    z = ConvGNAct(self.ham_channels, use_norm=False, activation=nn.relu, dtype=self.dtype,
                  name='ham_in')(x)
    z = NMF2D(self.rank, self.num_segments, self.train_steps, self.eval_steps,
              self.one_step_gradient, name='ham')(z, train)
    z = ConvGNAct(self.ham_channels, activation=None, num_groups=self.num_groups,
                  dtype=self.dtype, name='ham_out')(z)
    return nn.relu(x + z)


class LightHamHead(nn.Module):
  """SegNeXt's decoder; logits at the resolution of features[in_index[0]] (stride 8)."""
  num_classes: int
  in_index: Sequence[int] = (1, 2, 3)
  channels: int = 256
  ham_channels: int = 256
  rank: int = 16
  num_segments: int = 1
  train_steps: int = 6
  eval_steps: int = 7
  one_step_gradient: bool = False
  num_groups: int = 32
  dropout_rate: float = 0.1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: Sequence[jax.Array], train: bool = False) -> jax.Array:
    inputs = [features[i] for i in self.in_index]
    size = inputs[0].shape[1:3]
    x = jnp.concatenate([bilinear_resize(f, size) for f in inputs], axis=-1)
    x = ConvGNAct(self.ham_channels, num_groups=self.num_groups, dtype=self.dtype,
                  name='squeeze')(x)
    x = Hamburger(self.ham_channels, self.rank, self.num_segments, self.train_steps,
                  self.eval_steps, self.one_step_gradient, self.num_groups, dtype=self.dtype,
                  name='hamburger')(x, train)
    x = ConvGNAct(self.channels, num_groups=self.num_groups, dtype=self.dtype, name='align')(x)
    return SegClassifier(self.num_classes, self.dropout_rate, dtype=self.dtype,
                         name='classifier')(x, train)
