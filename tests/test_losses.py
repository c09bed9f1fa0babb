"""Cross-entropy against a direct NumPy computation on random inputs."""

import numpy as np
import pytest

from semseg_jax import losses


def _numpy_ce(logits, labels, ignore_index):
  shifted = logits - logits.max(-1, keepdims=True)
  log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
  total, count = 0.0, 0
  for idx in np.ndindex(labels.shape):
    if labels[idx] != ignore_index:
      total -= log_probs[idx + (labels[idx],)]
      count += 1
  return total / max(count, 1)


@pytest.mark.parametrize('seed', range(3))
def test_cross_entropy_matches_numpy(seed):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(2, 6, 7, 5)).astype(np.float32) * 3
  labels = rng.integers(0, 5, size=(2, 6, 7))
  labels[rng.random(labels.shape) < 0.3] = 255
  got = float(losses.cross_entropy(logits, labels, 255))
  assert got == pytest.approx(_numpy_ce(logits, labels, 255), rel=1e-5)


def test_cross_entropy_all_ignored_is_zero():
  logits = np.zeros((1, 2, 2, 3), np.float32)
  assert float(losses.cross_entropy(logits, np.full((1, 2, 2), 255), 255)) == 0.0


def test_logits_are_resized_to_labels():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(1, 4, 4, 3)).astype(np.float32)
  labels = rng.integers(0, 3, size=(1, 16, 16))
  resized = np.asarray(losses.resize_logits(logits, (16, 16)))
  assert resized.shape == (1, 16, 16, 3)
  got = float(losses.cross_entropy(logits, labels, 255))
  assert got == pytest.approx(_numpy_ce(resized, labels, 255), rel=1e-5)


def test_total_loss_weights_aux():
  rng = np.random.default_rng(1)
  main, aux = (rng.normal(size=(1, 4, 4, 3)).astype(np.float32) for _ in range(2))
  labels = rng.integers(0, 3, size=(1, 4, 4))
  total, parts = losses.total_loss({'logits': main, 'aux': [aux]}, labels, 255, 0.4)
  assert float(total) == pytest.approx(float(parts['loss_main']) + 0.4 * float(parts['loss_aux0']))
