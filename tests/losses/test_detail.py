"""STDC's detail loss (its boundary targets, BCE and Dice) against NumPy brute force and
against values computed with mmsegmentation 1.2.2."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semseg_jax.losses import detail as detail_loss
from semseg_jax.models import layers
from tests.helpers.torch_reference import np_align_corners, np_nearest


# --- NumPy brute force -----------------------------------------------------------------------

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
  labels = jnp.asarray(labels)
  assert float(detail_loss.detail_bce(logits, labels)) == pytest.approx(MMSEG_BCE, abs=1e-6)
  assert float(detail_loss.detail_dice(logits, labels)) == pytest.approx(MMSEG_DICE, abs=1e-6)


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
      lambda x, y: 0.5 * detail_loss.detail_bce(x, y) + 2.0 * detail_loss.detail_dice(x, y)))
  got, grads = loss_and_grad(jnp.asarray(logits), jnp.asarray(labels))
  assert float(got) == pytest.approx(0.5 * want_bce + 2.0 * want_dice, rel=1e-5)
  assert grads.shape == logits.shape and np.isfinite(np.asarray(grads)).all()
  assert np.abs(np.asarray(grads)).sum() > 0


# --- Model -----------------------------------------------------------------------------------
