"""Per-pixel losses (cross-entropy, OHEM, focal) against direct NumPy computations on random
inputs, and the composition of terms per model output (losses.total_loss)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from semseg_jax import losses
from semseg_jax.data import distance_maps
from semseg_jax.losses import detail
from semseg_jax.losses import pixel
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
  total, count, total_weight = 0.0, 0, 0.0
  for idx in np.ndindex(labels.shape):
    y = labels[idx]
    if y == 255:
      continue
    term = -(1 - smoothing) * weights[y] * log_p[idx + (y,)]
    term -= smoothing / num_classes * sum(weights[c] * log_p[idx + (c,)]
                                          for c in range(num_classes))
    total += term
    count += 1
    total_weight += weights[y]
  if average == 'weight':
    return total / total_weight
  return total / (labels.size if average == 'all' else max(count, 1))


@pytest.mark.parametrize('seed', range(3))
@pytest.mark.parametrize('weights,smoothing,average', [
    (None, 0.0, 'valid'), ((1.0, 2.0, 0.5, 3.0, 1.5), 0.0, 'valid'), (None, 0.1, 'valid'),
    ((1.0, 2.0, 0.5, 3.0, 1.5), 0.2, 'all'), ((1.0, 2.0, 0.5, 3.0, 1.5), 0.0, 'weight'),
    ((1.0, 2.0, 0.5, 3.0, 1.5), 0.1, 'weight')])
def test_cross_entropy_matches_numpy(seed, weights, smoothing, average):
  logits, labels = _inputs(seed)
  got = float(pixel.cross_entropy(logits, labels, 255, weights, label_smoothing=smoothing,
                                   average=average))
  assert got == pytest.approx(_numpy_ce(logits, labels, weights, smoothing, average), rel=1e-5)


def test_cross_entropy_all_ignored_is_zero():
  logits = np.zeros((1, 2, 2, 3), np.float32)
  for average in ('valid', 'all', 'weight'):
    assert float(pixel.cross_entropy(logits, np.full((1, 2, 2), 255), 255,
                                     average=average)) == 0.0


def test_logits_are_resized_to_labels():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(1, 4, 4, 3)).astype(np.float32)
  labels = rng.integers(0, 3, size=(1, 16, 16))
  resized = np.asarray(losses.resize_logits(logits, (16, 16)))
  assert resized.shape == (1, 16, 16, 3)
  got = float(pixel.cross_entropy(logits, labels, 255))
  assert got == pytest.approx(_numpy_ce(resized, labels), rel=1e-5)


def _numpy_ohem(logits, labels, weights, thresh, min_kept, images_per_group, definition,
                avg_non_ignore=False):
  """The references, GPU by GPU: mmseg's OHEMPixelSampler (batch_kept = min_kept x images,
  threshold = max(sorted[min(batch_kept, n - 1)], thresh), kept if p < threshold) then its
  CrossEntropyLoss (the kept pixels' loss summed over all pixels, or over the valid ones with
  avg_non_ignore); HRNet's OhemCrossEntropy (the same threshold with min_kept, the mean over the
  kept pixels). The GPUs' losses are averaged, as data-parallel gradients are."""
  group = images_per_group or len(labels)
  results = []
  for start in range(0, len(labels), group):
    lg, lb = logits[start:start + group].astype(np.float64), labels[start:start + group]
    log_p = _log_softmax(lg)
    valid = lb != 255
    safe = np.where(valid, lb, 0)
    true_p = np.exp(np.take_along_axis(log_p, safe[..., None], -1)[..., 0])
    nll = -np.log(true_p) * np.asarray(weights)[safe]
    sorted_p = np.sort(true_p[valid])
    k = min_kept * len(lb) if definition == 'mmseg' else min_kept
    threshold = max(sorted_p[min(k, len(sorted_p) - 1)], thresh) if len(sorted_p) else thresh
    kept = valid & (true_p < threshold)
    if definition == 'mmseg':
      results.append(nll[kept].sum() / (valid.sum() if avg_non_ignore else lb.size))
    else:
      results.append(nll[kept].sum() / max(kept.sum(), 1))
  return float(np.mean(results))


@pytest.mark.parametrize('definition', ['mmseg', 'kept_mean'])
@pytest.mark.parametrize('seed,thresh,min_kept,images_per_group', [
    (0, 0.7, 5, 0), (1, 0.7, 40, 0), (2, 0.2, 10, 1), (3, 0.7, 1000, 2), (4, 0.7, 3, 2)])
def test_ohem_matches_each_reference_definition(definition, seed, thresh, min_kept,
                                                images_per_group):
  logits, labels = _inputs(seed, shape=(4, 6, 7))
  weights = (1.0, 2.0, 0.5, 3.0, 1.5)
  expected = _numpy_ohem(logits, labels, weights, thresh, min_kept, images_per_group,
                         definition)
  got = float(pixel.ohem_cross_entropy(logits, labels, 255, weights, thresh=thresh,
                                       min_kept=min_kept, images_per_group=images_per_group,
                                       definition=definition))
  assert got == pytest.approx(expected, rel=1e-5)


def test_ohem_mmseg_with_avg_non_ignore_divides_by_the_valid_pixels():
  logits, labels = _inputs(5, shape=(4, 6, 7))
  expected = _numpy_ohem(logits, labels, (1.0,) * 5, 0.7, 4, 2, 'mmseg', avg_non_ignore=True)
  got = float(pixel.ohem_cross_entropy(logits, labels, 255, thresh=0.7, min_kept=4,
                                       images_per_group=2, avg_non_ignore=True))
  assert got == pytest.approx(expected, rel=1e-5)


def test_ohem_keeps_the_pixels_each_definition_keeps():
  """With thresh 0 only the min_kept floor decides: mmseg keeps min_kept per image of a group,
  the kept-pixel mean min_kept per group, so (on a batch where every pixel is valid and the
  probabilities are distinct) the loss is the mean of exactly those hardest pixels."""
  logits, labels = _inputs(6, shape=(4, 6, 7))
  labels[labels == 255] = 0
  log_p = _log_softmax(logits.astype(np.float64))
  true_p = np.exp(np.take_along_axis(log_p, labels[..., None], -1)[..., 0])
  for definition, per_group in (('mmseg', 2 * 5), ('kept_mean', 5)):
    expected = []
    for group in (slice(0, 2), slice(2, 4)):
      hardest = np.sort(true_p[group].ravel())[:per_group]  # Strictly below the next one.
      total = -np.log(hardest).sum()
      expected.append(total / (2 * 6 * 7) if definition == 'mmseg' else total / per_group)
    got = float(pixel.ohem_cross_entropy(logits, labels, 255, thresh=0.0, min_kept=5,
                                         images_per_group=2, definition=definition))
    assert got == pytest.approx(np.mean(expected), rel=1e-5), definition


@pytest.mark.parametrize('options,message', [({'images_per_group': 3}, 'images_per_group=3'),
                                             ({'definition': 'hrnet'}, 'definition')])
def test_ohem_bad_options_say_which(options, message):
  with pytest.raises(ValueError, match=message):
    pixel.ohem_cross_entropy(*_inputs(0, shape=(4, 6, 7)), 255, **options)


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
  got = float(pixel.focal_loss(logits, labels, 255, gamma=gamma, alpha=alpha))
  assert got == pytest.approx(total / count, rel=1e-5)
  if gamma == 0.0 and alpha == 1.0:  # Focal with gamma 0 is cross-entropy.
    assert got == pytest.approx(float(pixel.cross_entropy(logits, labels, 255)), rel=1e-6)


def _loss_config(logits, aux=(), detail_terms=(), class_weights=()):
  config = ml_collections.ConfigDict()
  config.logits, config.aux, config.detail = logits, aux, detail_terms
  config.class_weights = class_weights
  return config


def test_total_loss_composes_terms_for_the_logits_and_each_aux_output():
  logits, labels = _inputs(0)
  aux = [_inputs(1)[0], _inputs(2)[0]]
  config = _loss_config((('cross_entropy', 1.0, {}), ('focal', 0.5, {'gamma': 1.0})),
                        (('cross_entropy', 0.4, {'label_smoothing': 0.1}),))
  total, parts = jax.jit(lambda o, l: losses.total_loss(o, {'label': l}, config, 255))(
      {'logits': logits, 'aux': aux}, labels)
  expected = (float(pixel.cross_entropy(logits, labels)) +
              0.5 * float(pixel.focal_loss(logits, labels, gamma=1.0)) +
              sum(0.4 * float(pixel.cross_entropy(a, labels, label_smoothing=0.1)) for a in aux))
  assert float(total) == pytest.approx(expected, rel=1e-5)
  assert set(parts) == {'loss_logits_cross_entropy', 'loss_logits_focal',
                        'loss_aux0_cross_entropy', 'loss_aux1_cross_entropy'}


def test_total_loss_trains_each_detail_output_with_its_terms():
  logits, labels = _inputs(4)
  labels = np.asarray(labels)
  labels[:, :2] = 255  # The boundary targets treat the ignore label as a value (as STDC does).
  details = [np.random.default_rng(k).normal(size=(2, 3, 4, 1)).astype(np.float32)  # Resized up.
             for k in (5, 6)]
  config = _loss_config((('cross_entropy', 1.0, {}),), (),
                        (('detail_bce', 0.5, {}), ('detail_dice', 2.0, {})))
  total, parts = jax.jit(lambda o, l: losses.total_loss(o, {'label': l}, config, 255))(
      {'logits': logits, 'aux': [], 'detail': details}, labels)
  targets = detail.boundary_targets(jnp.asarray(labels))
  expected = float(pixel.cross_entropy(logits, labels))
  for k, detail_logits in enumerate(details):
    resized = layers.resize_align_corners(jnp.asarray(detail_logits), labels.shape[1:])[..., 0]
    bce = float(detail.binary_cross_entropy(resized, targets))
    dice = float(detail.dice(jax.nn.sigmoid(resized), targets))
    assert float(parts[f'loss_detail{k}_detail_bce']) == pytest.approx(bce, rel=1e-5)
    assert float(parts[f'loss_detail{k}_detail_dice']) == pytest.approx(dice, rel=1e-5)
    expected += 0.5 * bce + 2.0 * dice
  assert float(total) == pytest.approx(expected, rel=1e-5)


def test_every_registered_loss_composes_under_jit():
  logits, labels = _inputs(3)
  classes_maps = [distance_maps.boundary_distance_maps(l, logits.shape[-1], 255) for l in labels]
  batch = {'label': labels, 'distance_classes': np.stack([c for c, _ in classes_maps]),
           'boundary_distance': np.stack([m for _, m in classes_maps])}
  is_detail = lambda name: name.startswith('detail_')
  class_terms = tuple((name, 1.0, {}) for name in losses.LOSSES if not is_detail(name))
  detail_terms = tuple((name, 1.0, {}) for name in losses.LOSSES if is_detail(name))
  detail_logits = logits[..., :1]
  total, parts = jax.jit(lambda o, b: losses.total_loss(
      o, b, _loss_config(class_terms, (), detail_terms), 255))(
          {'logits': logits, 'detail': [detail_logits]}, batch)
  expected = 0.0
  for name, loss in losses.LOSSES.items():
    extra = {k: batch[k] for k in loss.batch_fields}
    expected += float(loss.fn(detail_logits if is_detail(name) else logits, labels, 255,
                              **extra))
  assert float(total) == pytest.approx(expected, rel=1e-5)
  assert len(parts) == len(losses.LOSSES)


def test_distance_losses_without_maps_say_what_is_missing():
  logits, labels = _inputs(0)
  with pytest.raises(ValueError, match='boundary_distance'):
    losses.total_loss({'logits': logits}, {'label': labels},
                      _loss_config((('boundary', 1.0, {}),)), 255)


def test_an_output_without_a_loss_field_is_an_error():
  logits, labels = _inputs(0)
  with pytest.raises(ValueError, match='edges'):
    losses.total_loss({'logits': logits, 'edges': logits}, {'label': labels},
                      _loss_config((('cross_entropy', 1.0, {}),)), 255)


def test_bad_terms_fail_naming_the_field():
  with pytest.raises(ValueError, match='config.loss.aux'):
    losses.check_terms(_loss_config((), (('cross_entropyy', 1.0, {}),)))
  with pytest.raises(ValueError, match='class_weights'):
    pixel.cross_entropy(*_inputs(0), 255, (1.0, 2.0))
