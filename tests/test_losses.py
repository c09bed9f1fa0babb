"""The cross-entropy family against direct NumPy computations on random inputs."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from semseg_jax import detail_loss
from semseg_jax import losses
from semseg_jax.data import distance_maps
from semseg_jax.models import layers


def _log_softmax(logits):
  shifted = logits - logits.max(-1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def _inputs(seed, num_classes=5, shape=(2, 6, 7)):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(*shape, num_classes)).astype(np.float32) * 3
  labels = rng.integers(0, num_classes - 1, size=shape)  # The last class never occurs.
  labels[rng.random(shape) < 0.3] = 255
  return logits, labels


def _numpy_ce(logits, labels, weights=None, smoothing=0.0, average='valid'):
  log_p = _log_softmax(logits.astype(np.float64))
  num_classes = logits.shape[-1]
  weights = np.ones(num_classes) if weights is None else np.asarray(weights, np.float64)
  total, count = 0.0, 0
  for idx in np.ndindex(labels.shape):
    y = labels[idx]
    if y == 255:
      continue
    term = -(1 - smoothing) * weights[y] * log_p[idx + (y,)]
    term -= smoothing / num_classes * sum(weights[c] * log_p[idx + (c,)]
                                          for c in range(num_classes))
    total += term
    count += 1
  return total / (labels.size if average == 'all' else max(count, 1))


@pytest.mark.parametrize('seed', range(3))
@pytest.mark.parametrize('weights,smoothing,average', [
    (None, 0.0, 'valid'), ((1.0, 2.0, 0.5, 3.0, 1.5), 0.0, 'valid'), (None, 0.1, 'valid'),
    ((1.0, 2.0, 0.5, 3.0, 1.5), 0.2, 'all')])
def test_cross_entropy_matches_numpy(seed, weights, smoothing, average):
  logits, labels = _inputs(seed)
  got = float(losses.cross_entropy(logits, labels, 255, weights, label_smoothing=smoothing,
                                   average=average))
  assert got == pytest.approx(_numpy_ce(logits, labels, weights, smoothing, average), rel=1e-5)


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
  assert got == pytest.approx(_numpy_ce(resized, labels), rel=1e-5)


@pytest.mark.parametrize('seed,thresh,min_kept', [(0, 0.7, 5), (1, 0.7, 40), (2, 0.2, 10),
                                                  (3, 0.7, 1000)])
def test_ohem_matches_numpy(seed, thresh, min_kept):
  logits, labels = _inputs(seed)
  weights = (1.0, 2.0, 0.5, 3.0, 1.5)
  log_p = _log_softmax(logits.astype(np.float64))
  valid = labels != 255
  true_p = np.exp(np.take_along_axis(log_p, np.where(valid, labels, 0)[..., None], -1)[..., 0])
  probs = np.sort(true_p[valid])
  threshold = max(probs[min(min_kept, len(probs) - 1)], thresh)
  kept = valid & (true_p < threshold)
  nll = -np.log(true_p) * np.asarray(weights)[np.where(valid, labels, 0)]
  expected = nll[kept].sum() / kept.sum()
  assert kept.sum() >= min(min_kept, valid.sum() - 1)
  got = float(losses.ohem_cross_entropy(logits, labels, 255, weights, thresh=thresh,
                                        min_kept=min_kept))
  assert got == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize('seed,gamma,alpha', [(0, 2.0, 0.25), (1, 0.0, 1.0),
                                              (2, 1.5, (0.1, 0.2, 0.3, 0.4, 0.5))])
def test_focal_matches_numpy(seed, gamma, alpha):
  logits, labels = _inputs(seed)
  log_p = _log_softmax(logits.astype(np.float64))
  total, count = 0.0, 0
  for idx in np.ndindex(labels.shape):
    y = labels[idx]
    if y != 255:
      a = alpha[y] if isinstance(alpha, tuple) else alpha
      total += -a * (1 - np.exp(log_p[idx + (y,)])) ** gamma * log_p[idx + (y,)]
      count += 1
  got = float(losses.focal_loss(logits, labels, 255, gamma=gamma, alpha=alpha))
  assert got == pytest.approx(total / count, rel=1e-5)
  if gamma == 0.0 and alpha == 1.0:  # Focal with gamma 0 is cross-entropy.
    assert got == pytest.approx(float(losses.cross_entropy(logits, labels, 255)), rel=1e-6)


def _loss_config(main, aux, class_weights=(), detail_weights=(1.0, 1.0)):
  config = ml_collections.ConfigDict()
  config.main, config.aux, config.class_weights = main, aux, class_weights
  config.detail_weights = detail_weights
  return config


def test_total_loss_composes_terms_for_main_and_each_aux_head():
  logits, labels = _inputs(0)
  aux = [_inputs(1)[0], _inputs(2)[0]]
  config = _loss_config((('cross_entropy', 1.0, {}), ('focal', 0.5, {'gamma': 1.0})),
                        (('cross_entropy', 0.4, {'label_smoothing': 0.1}),))
  total, parts = jax.jit(lambda o, l: losses.total_loss(o, l, config, 255))(
      {'logits': logits, 'aux': aux}, labels)
  expected = (float(losses.cross_entropy(logits, labels)) +
              0.5 * float(losses.focal_loss(logits, labels, gamma=1.0)) +
              sum(0.4 * float(losses.cross_entropy(a, labels, label_smoothing=0.1)) for a in aux))
  assert float(total) == pytest.approx(expected, rel=1e-5)
  assert set(parts) == {'loss_main_cross_entropy', 'loss_main_focal',
                        'loss_aux0_cross_entropy', 'loss_aux1_cross_entropy'}


def test_total_loss_adds_the_weighted_boundary_loss_of_each_detail_head():
  logits, labels = _inputs(4)
  labels = np.asarray(labels)
  labels[:, :2] = 255  # The boundary targets treat the ignore label as a value (as STDC does).
  details = [np.random.default_rng(k).normal(size=(2, 3, 4, 1)).astype(np.float32)  # Resized up.
             for k in (5, 6)]
  config = _loss_config((('cross_entropy', 1.0, {}),), (), detail_weights=(0.5, 2.0))
  total, parts = jax.jit(lambda o, l: losses.total_loss(o, l, config, 255))(
      {'logits': logits, 'aux': [], 'detail': details}, labels)
  targets = detail_loss.boundary_targets(jnp.asarray(labels))
  expected = float(losses.cross_entropy(logits, labels))
  for k, detail in enumerate(details):
    resized = layers.resize_align_corners(jnp.asarray(detail), labels.shape[1:])[..., 0]
    term = (0.5 * detail_loss.binary_cross_entropy(resized, targets)
            + 2.0 * detail_loss.dice(jax.nn.sigmoid(resized), targets))
    assert float(parts[f'loss_detail{k}']) == pytest.approx(float(term), rel=1e-5)
    expected += float(term)
  assert float(total) == pytest.approx(expected, rel=1e-5)


def test_every_registered_loss_composes_under_jit():
  logits, labels = _inputs(3)
  classes_maps = [distance_maps.boundary_distance_maps(l, logits.shape[-1], 255) for l in labels]
  batch = {'distance_classes': np.stack([c for c, _ in classes_maps]),
           'boundary_distance': np.stack([m for _, m in classes_maps])}
  terms = tuple((name, 1.0, {}) for name in losses.LOSSES)
  total, parts = jax.jit(lambda o, l, b: losses.total_loss(o, l, _loss_config(terms, ()), 255,
                                                           b))(
      {'logits': logits, 'aux': []}, labels, batch)
  expected = sum(float(fn(logits, labels, 255, **(batch if name in losses.DISTANCE_LOSSES
                                                  else {})))
                 for name, fn in losses.LOSSES.items())
  assert float(total) == pytest.approx(expected, rel=1e-5)
  assert len(parts) == len(losses.LOSSES)


def test_distance_losses_without_maps_say_what_is_missing():
  logits, labels = _inputs(0)
  with pytest.raises(ValueError, match='boundary_distance'):
    losses.total_loss({'logits': logits}, labels, _loss_config((('boundary', 1.0, {}),), ()),
                      255)


def test_bad_terms_fail_naming_the_field():
  with pytest.raises(ValueError, match='config.loss.main'):
    losses.check_loss_terms((('cross_entropyy', 1.0, {}),), 'config.loss.main')
  with pytest.raises(ValueError, match='class_weights'):
    losses.cross_entropy(*_inputs(0), 255, (1.0, 2.0))
