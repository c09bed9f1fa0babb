"""STDC-Seg: model shapes, modes and parameter counts; the detail loss and the resizes against
NumPy brute force and against values computed with mmsegmentation 1.2.2."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semseg_jax import detail_loss
from semseg_jax.models import stdc as stdc_model
from semseg_jax.models import layers
from semseg_jax.models.backbones import stdc as stdc_backbone

TINY = dict(stage_depths=(2, 1, 1), stage_channels=(8, 16, 32, 64, 128), context_channels=16,
            fusion_channels=32, channels=16, aux_channels=8, detail_channels=8)


# --- NumPy brute force -----------------------------------------------------------------------

def np_nearest(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
  """PyTorch's nearest resize of [N, H, W, ...]: src = floor(dst * float32(in / out))."""
  n, h, w = x.shape[:3]
  out = np.zeros((n, out_h, out_w) + x.shape[3:], x.dtype)
  sh, sw = np.float32(h) / np.float32(out_h), np.float32(w) / np.float32(out_w)
  for i in range(out_h):
    for j in range(out_w):
      si = min(int(np.floor(np.float32(i) * sh)), h - 1)
      sj = min(int(np.floor(np.float32(j) * sw)), w - 1)
      out[:, i, j] = x[:, si, sj]
  return out


def np_align_corners(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
  """Bilinear resize of NHWC with align_corners=True, in float64 loops."""
  n, h, w, c = x.shape
  out = np.zeros((n, out_h, out_w, c))
  for i in range(out_h):
    y = i * (h - 1) / (out_h - 1) if out_h > 1 else 0.0
    y0 = int(math.floor(y))
    y1, fy = min(y0 + 1, h - 1), y - y0
    for j in range(out_w):
      x_ = j * (w - 1) / (out_w - 1) if out_w > 1 else 0.0
      x0 = int(math.floor(x_))
      x1, fx = min(x0 + 1, w - 1), x_ - x0
      out[:, i, j] = ((1 - fy) * ((1 - fx) * x[:, y0, x0] + fx * x[:, y0, x1])
                      + fy * ((1 - fx) * x[:, y1, x0] + fx * x[:, y1, x1]))
  return out


def np_laplacian(labels: np.ndarray, stride: int) -> np.ndarray:
  """F.conv2d(labels, [[-1,-1,-1],[-1,8,-1],[-1,-1,-1]], stride, padding=1), clamped at 0."""
  n, h, w = labels.shape
  kernel = -np.ones((3, 3), np.float32)
  kernel[1, 1] = 8
  out_h, out_w = (h + 2 - 3) // stride + 1, (w + 2 - 3) // stride + 1
  out = np.zeros((n, out_h, out_w), np.float32)
  for b in range(n):
    for i in range(out_h):
      for j in range(out_w):
        total = np.float32(0)
        for di in range(3):
          for dj in range(3):
            y, x = i * stride + di - 1, j * stride + dj - 1
            if 0 <= y < h and 0 <= x < w:
              total += kernel[di, dj] * np.float32(labels[b, y, x])
        out[b, i, j] = max(total, np.float32(0))
  return out


def np_boundary_targets(labels: np.ndarray) -> np.ndarray:
  """mmseg 1.2.2's STDCHead target construction, step by step."""
  h, w = labels.shape[1:]
  thresh = np.float32(0.1)
  pyramid = []
  for stride in (1, 2, 4):
    edges = np_laplacian(labels, stride)
    if stride > 1:
      edges = np_nearest(edges, h, w)
    pyramid.append((edges > thresh).astype(np.float32))
  fused = (np.float32(0.6) * pyramid[0] + np.float32(0.3) * pyramid[1]
           + np.float32(0.1) * pyramid[2])
  return (fused > thresh).astype(np.float32)


def np_bce(logits: np.ndarray, targets: np.ndarray) -> float:
  logits, targets = logits.astype(np.float64), targets.astype(np.float64)
  probs = 1 / (1 + np.exp(-logits))
  return float(np.mean(-(targets * np.log(probs) + (1 - targets) * np.log(1 - probs))))


def np_dice(probs: np.ndarray, targets: np.ndarray, eps: float = 1e-3) -> float:
  losses = []
  for p, t in zip(probs.astype(np.float64), targets.astype(np.float64)):
    losses.append(1 - 2 * np.sum(p * t) / (np.sum(p ** 2) + eps + np.sum(t ** 2) + eps))
  return float(np.mean(losses))


def random_labels(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
  """Blocky labels in 0..18 with 255 regions, upsampled from a coarse grid plus noise."""
  coarse = rng.integers(0, 19, (n, (h + 2) // 3, (w + 2) // 3))
  coarse[rng.random(coarse.shape) < 0.2] = 255
  labels = coarse.repeat(3, 1).repeat(3, 2)[:, :h, :w]
  noise = rng.random(labels.shape) < 0.05
  labels[noise] = rng.integers(0, 19, noise.sum())
  return labels.astype(np.int32)


# --- Resizes and pooling ---------------------------------------------------------------------

def test_resize_nearest_matches_pytorch_indexing():
  # Values from torch 2.13: F.interpolate(arange(26), size=22, mode='nearest') (the integer
  # formula dst * in // out gives 13 at position 11).
  torch_26_to_22 = [0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 14, 15, 16, 17, 18, 20, 21, 22, 23,
                    24]
  assert layers.nearest_indices(26, 22).tolist() == torch_26_to_22
  x = np.random.default_rng(0).normal(size=(2, 5, 7, 3)).astype(np.float32)
  for out_hw in ((9, 13), (10, 14), (1, 1), (5, 7), (3, 4)):
    got = layers.resize_nearest(jnp.asarray(x), out_hw)
    np.testing.assert_array_equal(np.asarray(got), np_nearest(x, *out_hw))


def test_resize_align_corners_matches_loops():
  x = np.random.default_rng(1).normal(size=(2, 3, 4, 2)).astype(np.float32)
  for out_hw in ((9, 11), (24, 32), (3, 4), (1, 5)):
    got = layers.resize_align_corners(jnp.asarray(x), out_hw)
    np.testing.assert_allclose(np.asarray(got), np_align_corners(x, *out_hw), atol=1e-5)


def test_avg_pool_counts_padding():
  x = np.random.default_rng(2).normal(size=(1, 7, 8, 2)).astype(np.float32)
  padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  want = np.zeros((1, 4, 4, 2), np.float32)
  for i in range(4):
    for j in range(4):
      want[:, i, j] = padded[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3].sum(axis=(1, 2)) / 9
  got = layers.avg_pool_3x3_s2(jnp.asarray(x))
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-6)


# --- Detail loss -----------------------------------------------------------------------------

# A label map ('x' = 255) with the targets and losses mmseg 1.2.2 computes for it (STDCHead's
# loss_by_feat targets; binary_cross_entropy and DiceLoss on the logits below resized with
# align_corners=True). Values from torch 2.13 CPU.
MMSEG_LABELS = ['00111xx2222', '00111xx2222', '0011xxx2233', '3301xx02233', '33010002200',
                'xx010002200', 'xx111113300', '22111113300', '22x11110001']
MMSEG_TARGETS = ['00110111111', '00110111111', '00111111011', '11111111011', '00000001110',
                 '11010001110', '11011101110', '11001101110', '11111111001']
MMSEG_LOGITS = [[1.5, -2.0, 0.5, 3.0], [-0.5, 2.5, -1.0, 0.0], [2.0, -3.0, 1.0, -1.5]]
MMSEG_BCE, MMSEG_DICE = 0.776964664, 0.283928514


def test_boundary_targets_match_mmseg_example():
  labels = np.array([[255 if c == 'x' else int(c) for c in row] for row in MMSEG_LABELS],
                    np.int32)[None]
  want = np.array([[int(c) for c in row] for row in MMSEG_TARGETS], np.float32)[None]
  got = detail_loss.boundary_targets(jnp.asarray(labels))
  np.testing.assert_array_equal(np.asarray(got), want)
  np.testing.assert_array_equal(np_boundary_targets(labels), want)
  logits = jnp.asarray(MMSEG_LOGITS, jnp.float32)[None, :, :, None]
  resized = layers.resize_align_corners(logits, (9, 11))[..., 0]
  targets = jnp.asarray(want)
  assert float(detail_loss.binary_cross_entropy(resized, targets)) == pytest.approx(
      MMSEG_BCE, abs=1e-6)
  assert float(detail_loss.dice(jax.nn.sigmoid(resized), targets)) == pytest.approx(
      MMSEG_DICE, abs=1e-6)
  assert float(detail_loss.detail_loss(logits, jnp.asarray(labels))) == pytest.approx(
      MMSEG_BCE + MMSEG_DICE, abs=2e-6)


@pytest.mark.parametrize('shape', [(2, 13, 18), (1, 16, 16), (1, 7, 5)])
def test_boundary_targets_match_brute_force(shape):
  labels = random_labels(np.random.default_rng(sum(shape)), *shape)
  assert (labels == 255).any()
  got = np.asarray(detail_loss.boundary_targets(jnp.asarray(labels)))
  want = np_boundary_targets(labels)
  np.testing.assert_array_equal(got, want)
  assert set(np.unique(got)) <= {0.0, 1.0} and got.dtype == np.float32
  assert 0 < got.mean() < 1


def test_detail_loss_matches_brute_force():
  rng = np.random.default_rng(3)
  labels = random_labels(rng, 2, 21, 30)
  logits = rng.normal(size=(2, 3, 4, 1)).astype(np.float32) * 2
  targets = np_boundary_targets(labels)
  resized = np_align_corners(logits, 21, 30)[..., 0]
  probs = 1 / (1 + np.exp(-resized))
  want_bce, want_dice = np_bce(resized, targets), np_dice(probs, targets)
  jt, jr = jnp.asarray(targets), jnp.asarray(resized, jnp.float32)
  assert float(detail_loss.binary_cross_entropy(jr, jt)) == pytest.approx(want_bce, rel=1e-5)
  assert float(detail_loss.dice(jax.nn.sigmoid(jr), jt)) == pytest.approx(want_dice, rel=1e-5)
  loss_and_grad = jax.jit(jax.value_and_grad(
      lambda x, y: detail_loss.detail_loss(x, y, bce_weight=0.5, dice_weight=2.0)))
  got, grads = loss_and_grad(jnp.asarray(logits), jnp.asarray(labels))
  assert float(got) == pytest.approx(0.5 * want_bce + 2.0 * want_dice, rel=1e-5)
  assert grads.shape == logits.shape and np.isfinite(np.asarray(grads)).all()
  assert np.abs(np.asarray(grads)).sum() > 0


# --- Model -----------------------------------------------------------------------------------

def _stride8(size: int) -> int:
  for _ in range(3):
    size = (size - 1) // 2 + 1
  return size


def test_tiny_model_modes_and_shapes():
  model = stdc_model.stdc('stdc1', 5, **TINY)
  images = jax.random.normal(jax.random.PRNGKey(0), (2, 37, 50, 3))
  # The 'rbg' generator: the same initialisers, but a jitted init compiles several times faster.
  variables = jax.jit(model.init)(jax.random.key(1, impl='rbg'), images)
  assert set(variables['params']) == {'backbone', 'decode_head', 'auxiliary_heads_0',
                                      'auxiliary_heads_1', 'detail_head'}
  assert set(variables['params']['backbone']) == {'stdc_net', 'arms_0', 'arms_1', 'convs_0',
                                                  'convs_1', 'conv_avg', 'ffm'}
  h, w = _stride8(37), _stride8(50)  # 5 x 7; stride 16: 3 x 4.

  train_apply = jax.jit(lambda v, x, key: model.apply(
      v, x, train=True, rngs={'dropout': key}, mutable=['batch_stats']))
  out, updates = train_apply(variables, images, jax.random.key(2, impl='rbg'))
  assert out['logits'].shape == (2, h, w, 5) and out['logits'].dtype == jnp.float32
  assert [a.shape for a in out['aux']] == [(2, h, w, 5), (2, 3, 4, 5)]
  assert [d.shape for d in out['detail']] == [(2, h, w, 1)]
  assert all(np.isfinite(np.asarray(a)).all() for a in [out['logits'], *out['aux'],
                                                        *out['detail']])
  old, new = jax.tree.leaves(variables['batch_stats']), jax.tree.leaves(updates['batch_stats'])
  assert all(not np.allclose(a, b) for a, b in zip(old, new))
  out2, _ = train_apply(variables, images, jax.random.key(3, impl='rbg'))
  assert not np.allclose(out['logits'], out2['logits'])

  evaluated = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, images)
  assert evaluated['logits'].shape == (2, h, w, 5)
  assert evaluated['aux'] == [] and evaluated['detail'] == []

  no_aux = stdc_model.stdc('stdc2', 5, aux_head=False, **TINY)
  shapes = jax.eval_shape(no_aux.init, jax.random.PRNGKey(0), images)
  assert set(shapes['params']) == {'backbone', 'decode_head'}


def test_bad_variant():
  with pytest.raises(ValueError, match='stdc1'):
    stdc_model.stdc('stdc3', 19)


def _stdc_module_params(cin: int, cout: int, stride: int) -> int:
  """One 'cat' STDC module, 4 blocks (conv weights + BN gamma/beta)."""
  total = cin * cout // 2 + cout  # layers_0: 1x1 to cout/2 + BN.
  if stride == 2:
    total += 9 * cout // 2 + cout  # downsample: depthwise 3x3 + BN.
  for cin_k, cout_k in ((cout // 2, cout // 4), (cout // 4, cout // 8), (cout // 8, cout // 8)):
    total += 9 * cin_k * cout_k + 2 * cout_k
  return total


def _expected_params(depths: tuple[int, ...], num_classes: int, heads: bool) -> int:
  channels = (32, 64, 256, 512, 1024)
  total = 27 * 32 + 64 + 9 * 32 * 64 + 128  # stages_0, stages_1.
  for i, depth in enumerate(depths):
    total += _stdc_module_params(channels[i + 1], channels[i + 2], 2)
    total += (depth - 1) * _stdc_module_params(channels[i + 2], channels[i + 2], 1)
  for cin in (1024, 512):  # ARMs: 3x3 ConvModule to 128 + 1x1 conv + BN.
    total += 9 * cin * 128 + 256 + 128 * 128 + 256
  total += 2 * (9 * 128 * 128 + 256)  # convs_0, convs_1.
  total += 1024 * 128 + 256  # conv_avg.
  total += 384 * 256 + 512 + 256 * 64 + 64 * 256  # FFM.
  total += 9 * 256 * 256 + 512 + 256 * num_classes + num_classes  # Decode head.
  if heads:
    total += 2 * (9 * 128 * 64 + 128 + 64 * num_classes + num_classes)  # Two aux FCN heads.
    total += 9 * 256 * 64 + 128 + 64 + 1  # Detail head, one channel.
  return total


# mmseg 1.2.2, configs/stdc/stdc{1,2}_4xb12-80k_cityscapes-512x1024.py built with the registry:
# trainable parameters with all heads (its detail head has 2 output channels: 65 more than ours)
# and without the auxiliary heads (backbone + decode head).
MMSEG_COUNTS = {'stdc1': (8573019, 8275123), 'stdc2': (12603483, 12305587)}


@pytest.mark.parametrize('variant', ['stdc1', 'stdc2'])
def test_full_size_parameter_count(variant):
  images = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
  for heads in (True, False):
    model = stdc_model.stdc(variant, 19, aux_head=heads)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), images)
    count = sum(leaf.size for leaf in jax.tree.leaves(shapes['params']))
    depths = stdc_backbone.STDC_ARCHS[variant]
    assert count == _expected_params(depths, 19, heads)
    with_heads, without = MMSEG_COUNTS[variant]
    assert count == (with_heads - 65 if heads else without)
