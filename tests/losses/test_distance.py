"""Distance maps and distance losses against brute-force float64 NumPy loops on tiny inputs."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from semseg_jax import losses
from semseg_jax.data import distance_maps
from semseg_jax.losses import distance as dl
from tests.helpers import loss_checks

IGNORE = 255
NUM_CLASSES = 4
MAX_CLASSES = 5  # One more slot than classes, so every example has padding.
WEIGHTS = (1.0, 2.0, 0.5, 3.0)


def _brute_distance(mask):
  """For each pixel, the smallest Euclidean distance to a pixel with the other mask value;
  all 0 if the mask is empty or full."""
  mask = np.asarray(mask, bool)
  if mask.all() or not mask.any():
    return np.zeros(mask.shape)
  out = np.zeros(mask.shape)
  h, w = mask.shape
  for i in range(h):
    for j in range(w):
      best = math.inf
      for a in range(h):
        for b in range(w):
          if mask[a, b] != mask[i, j]:
            best = min(best, math.hypot(i - a, j - b))
      out[i, j] = best
  return out


def _labels(seed, shape=(2, 6, 7), num_classes=NUM_CLASSES):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, num_classes - 1, size=shape)  # The last class never occurs.
  labels[rng.random(shape) < 0.25] = IGNORE
  return labels


def _inputs(seed, shape=(2, 6, 7), num_classes=NUM_CLASSES):
  rng = np.random.default_rng(1000 + seed)
  logits = (rng.normal(size=(*shape, num_classes)) * 2).astype(np.float32)
  return logits, _labels(seed, shape, num_classes)


def _batch_maps(labels, max_classes=MAX_CLASSES):
  """The pipeline's fields for a batch: (distance_classes [N, K], boundary_distance [N,H,W,K])."""
  pairs = [distance_maps.boundary_distance_maps(lb, max_classes, IGNORE) for lb in labels]
  return {'distance_classes': np.stack([c for c, _ in pairs]),
          'boundary_distance': np.stack([m for _, m in pairs])}


def _ref_dense(labels, num_classes=NUM_CLASSES):
  """d [N, H, W, C] by brute force, 0 for absent classes."""
  out = np.zeros((*labels.shape, num_classes))
  for n in range(labels.shape[0]):
    for c in range(num_classes):
      out[n, ..., c] = _brute_distance(labels[n] == c)
  return out


def _softmax(logits):
  x = logits.astype(np.float64)
  x = x - x.max(-1, keepdims=True)
  e = np.exp(x)
  return e / e.sum(-1, keepdims=True)


def _w(weights, num_classes=NUM_CLASSES):
  return [1.0] * num_classes if weights is None else list(weights)


# ---- Ground-truth maps ---------------------------------------------------------------------


@pytest.mark.parametrize('shape', [(6, 7), (5, 9), (1, 6)])
@pytest.mark.parametrize('seed', range(3))
def test_maps_match_brute_force(seed, shape):
  label = _labels(seed, (1, *shape))[0]
  classes, maps = distance_maps.boundary_distance_maps(label, MAX_CLASSES, IGNORE)
  assert classes.dtype == np.int32 and maps.dtype == np.float32
  assert classes.shape == (MAX_CLASSES,) and maps.shape == (*shape, MAX_CLASSES)
  present = sorted(set(label[label != IGNORE].tolist()))
  assert classes.tolist() == present + [-1] * (MAX_CLASSES - len(present))
  for k, c in enumerate(present):
    want = _brute_distance(label == c)
    np.testing.assert_allclose(maps[..., k], want, rtol=1e-6, atol=1e-5)
    if 0 < (label == c).sum() < label.size:
      assert maps[..., k].min() >= 1.0
  assert np.all(maps[..., len(present):] == 0)


def test_maps_full_cover_and_ignore_boundary():
  label = np.full((4, 5), 2)
  classes, maps = distance_maps.boundary_distance_maps(label, 3, IGNORE)
  assert classes.tolist() == [2, -1, -1]
  assert np.all(maps == 0)
  # With ignored pixels the class no longer covers the image: they lie outside it.
  label[0, 0] = IGNORE
  classes, maps = distance_maps.boundary_distance_maps(label, 3, IGNORE)
  assert classes.tolist() == [2, -1, -1]
  np.testing.assert_allclose(maps[..., 0], _brute_distance(label == 2), atol=1e-5)
  assert maps[0, 0, 0] == 1.0 and maps[3, 4, 0] == pytest.approx(5.0, abs=1e-5)
  # Nothing but ignored pixels: no class, all padding.
  classes, maps = distance_maps.boundary_distance_maps(np.full((2, 2), IGNORE), 2, IGNORE)
  assert classes.tolist() == [-1, -1] and np.all(maps == 0)


def test_maps_too_many_classes():
  label = np.array([[0, 1], [2, IGNORE]])
  with pytest.raises(ValueError, match=r'config\.loss\.distance_max_classes') as err:
    distance_maps.boundary_distance_maps(label, 2, IGNORE)
  assert '3 classes' in str(err.value) and 'limit of 2' in str(err.value)
  classes, _ = distance_maps.boundary_distance_maps(label, 3, IGNORE)
  assert classes.tolist() == [0, 1, 2]


def test_one_boundary_distance_empty_full():
  assert np.all(distance_maps.one_boundary_distance(np.zeros((3, 4), bool)) == 0)
  assert np.all(distance_maps.one_boundary_distance(np.ones((3, 4), bool)) == 0)


# ---- Device transform ----------------------------------------------------------------------


def _masks(shape, seed):
  rng = np.random.default_rng(seed)
  masks = [rng.random(shape) < p for p in (0.1, 0.5, 0.9)]
  single = np.zeros(shape, bool)
  single[shape[0] // 2, shape[1] - 1] = True
  masks += [np.zeros(shape, bool), np.ones(shape, bool), single, ~single]
  return np.stack(masks)


_JIT_BOUNDARY_DISTANCE = jax.jit(dl.boundary_distance, static_argnames='rows_per_step')


@pytest.mark.parametrize('shape', [(1, 1), (1, 6), (6, 1), (4, 4), (6, 9), (11, 4), (17, 3)])
def test_device_boundary_distance_matches_scipy(shape):
  masks = _masks(shape, sum(shape))
  want = np.stack([distance_maps.one_boundary_distance(m) for m in masks])
  got = np.asarray(_JIT_BOUNDARY_DISTANCE(masks))
  assert got.dtype == np.float32 and got.shape == masks.shape
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5)


def test_device_boundary_distance_eager_and_row_blocks():
  masks = _masks((11, 4), 5)
  want = np.stack([distance_maps.one_boundary_distance(m) for m in masks])
  np.testing.assert_allclose(np.asarray(dl.boundary_distance(masks)), want, rtol=1e-6, atol=1e-5)
  for step in (1, 4):  # Row blocks that divide H = 11 and do not (as the default 8).
    got = np.asarray(_JIT_BOUNDARY_DISTANCE(masks, rows_per_step=step))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5)


def test_device_boundary_distance_batched_leading_axes():
  masks = _masks((5, 8), 3).reshape(7, 1, 5, 8)
  masks = np.concatenate([masks, ~masks], axis=1)  # [7, 2, 5, 8]
  want = np.stack([[_brute_distance(m) for m in row] for row in masks])
  np.testing.assert_allclose(np.asarray(jax.jit(dl.boundary_distance)(masks)), want,
                             rtol=1e-6, atol=1e-5)


# ---- Loss references -----------------------------------------------------------------------


def _ref_phi(d, inside):
  if d == 0:
    return 0.0
  return 1.0 - d if inside else d


def _np_boundary(logits, labels, weights=None):
  probs, d, w = _softmax(logits), _ref_dense(labels), _w(weights)
  total, count = 0.0, 0
  for idx in np.ndindex(labels.shape):
    y = labels[idx]
    if y == IGNORE:
      continue
    num = sum(w[c] * _ref_phi(d[idx + (c,)], y == c) * probs[idx + (c,)]
              for c in range(logits.shape[-1]))
    total += num / sum(w)
    count += 1
  return total / count if count else 0.0


def _np_dpce(logits, labels, weights=None):
  probs, d, w = _softmax(logits), _ref_dense(labels), _w(weights)
  max_d = {}
  for (n, i, j) in np.ndindex(labels.shape):
    y = labels[n, i, j]
    if y != IGNORE:
      max_d[n, y] = max(max_d.get((n, y), 0.0), d[n, i, j, y])
  total, count = 0.0, 0
  for (n, i, j) in np.ndindex(labels.shape):
    y = labels[n, i, j]
    if y == IGNORE:
      continue
    m = max_d[n, y]
    phi = (m - d[n, i, j, y]) / (m - 1) if m > 1 else (1.0 if m == 1 else 0.0)
    total += (1 + phi) * -w[y] * np.log(probs[n, i, j, y])
    count += 1
  return total / count if count else 0.0


def _np_hausdorff(logits, labels, weights=None, alpha=2.0):
  probs, dg, w = _softmax(logits), _ref_dense(labels), _w(weights)
  num_classes = logits.shape[-1]
  pred = np.argmax(logits.astype(np.float64), axis=-1)
  valid = labels != IGNORE
  dp = np.zeros(probs.shape)
  for n in range(labels.shape[0]):
    for c in range(num_classes):
      dp[n, ..., c] = _brute_distance((pred[n] == c) & valid[n])
  total, count = 0.0, 0
  for idx in np.ndindex(labels.shape):
    y = labels[idx]
    if y == IGNORE:
      continue
    num = 0.0
    for c in range(num_classes):
      g = 1.0 if y == c else 0.0
      a, b = dp[idx + (c,)], dg[idx + (c,)]
      dist = (a ** alpha if a > 0 else 0.0) + (b ** alpha if b > 0 else 0.0)
      num += w[c] * (probs[idx + (c,)] - g) ** 2 * dist
    total += num / sum(w)
    count += 1
  return total / count if count else 0.0


CASES = {
    'boundary': (dl.boundary_loss, _np_boundary, {}),
    'dpce': (dl.dpce_loss, _np_dpce, {}),
    'hausdorff': (dl.hausdorff_dt_loss, _np_hausdorff, {}),
    'hausdorff_a1': (dl.hausdorff_dt_loss, lambda lg, lb, w: _np_hausdorff(lg, lb, w, 1.0),
                     {'alpha': 1.0}),
}


def _full_cover_case(seed):
  """Random inputs where image 1 is a single class (no boundary: its d is 0)."""
  logits, labels = _inputs(seed)
  labels[1] = 1
  return logits, labels


@pytest.mark.parametrize('seed,weights,full_cover', [
    (0, None, False), (1, WEIGHTS, False), (2, (0.0, 1.0, 0.0, 2.0), False), (3, WEIGHTS, True)])
@pytest.mark.parametrize('name', sorted(CASES))
def test_matches_numpy(name, seed, weights, full_cover):
  fn, ref, options = CASES[name]
  logits, labels = _full_cover_case(seed) if full_cover else _inputs(seed)
  got = float(fn(logits, labels, IGNORE, weights, **_batch_maps(labels), **options))
  want = ref(logits, labels, weights)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('name', sorted(CASES))
def test_jit_grad_finite_and_ignore_exact(name):
  fn, _, options = CASES[name]
  logits, labels = _inputs(3)
  maps = _batch_maps(labels)
  value = loss_checks.assert_ignored_pixels_count_nowhere(
      lambda lg: fn(lg, labels, IGNORE, WEIGHTS, **maps, **options), logits, labels, IGNORE)
  np.testing.assert_allclose(value, float(fn(logits, labels, IGNORE, WEIGHTS, **maps, **options)),
                             rtol=1e-6)


@pytest.mark.parametrize('name', sorted(CASES))
def test_smaller_logits_are_resized(name):
  fn, _, options = CASES[name]
  rng = np.random.default_rng(11)
  logits = rng.normal(size=(2, 3, 4, NUM_CLASSES)).astype(np.float32)
  labels = _labels(11)
  maps = _batch_maps(labels)
  value = fn(logits, labels, IGNORE, **maps, **options)
  assert value.shape == () and value.dtype == jnp.float32 and np.isfinite(float(value))
  resized = np.asarray(losses.resize_logits(jnp.asarray(logits), labels.shape[1:]))
  np.testing.assert_allclose(float(value), float(fn(resized, labels, IGNORE, **maps, **options)),
                             rtol=1e-6)
  grad = jax.jit(jax.grad(lambda lg: fn(lg, labels, IGNORE, **maps, **options)))(
      jnp.asarray(logits))
  assert grad.shape == logits.shape and np.all(np.isfinite(np.asarray(grad)))


@pytest.mark.parametrize('name', sorted(CASES))
def test_all_ignored_is_zero(name):
  fn, _, options = CASES[name]
  logits, labels = _inputs(0)
  labels[:] = IGNORE
  assert float(fn(logits, labels, IGNORE, **_batch_maps(labels), **options)) == 0.0


def test_perfect_prediction():
  _, labels = _inputs(4)
  maps = _batch_maps(labels)
  good = 40.0 * jax.nn.one_hot(np.where(labels == IGNORE, 0, labels), NUM_CLASSES)
  bad = 40.0 * jax.nn.one_hot((np.where(labels == IGNORE, 0, labels) + 1) % NUM_CLASSES,
                              NUM_CLASSES)
  for fn in (dl.dpce_loss, dl.hausdorff_dt_loss):
    assert abs(float(fn(good, labels, IGNORE, **maps))) < 1e-5
    assert float(fn(bad, labels, IGNORE, **maps)) > 1.0
  # The boundary loss is not 0 at the optimum, but lower than for a wrong prediction.
  assert float(dl.boundary_loss(good, labels, IGNORE, **maps)) < float(
      dl.boundary_loss(bad, labels, IGNORE, **maps))


def test_dense_maps_and_shape_check():
  labels = _labels(5)
  maps = _batch_maps(labels)
  dense = np.asarray(dl.dense_distance_maps(maps['distance_classes'], maps['boundary_distance'],
                                            NUM_CLASSES))
  np.testing.assert_allclose(dense, _ref_dense(labels), rtol=1e-6, atol=1e-5)
  logits, _ = _inputs(5)
  with pytest.raises(ValueError, match='boundary_distance'):
    dl.boundary_loss(logits, labels[:, :5], IGNORE, **maps)


# ---- Binary forms of the published references ----------------------------------------------


def _binary_inputs(seed, shape=(2, 7, 6)):
  rng = np.random.default_rng(200 + seed)
  logits = (rng.normal(size=(*shape, 2)) * 2).astype(np.float32)
  labels = (rng.random(shape) < 0.4).astype(np.int64)
  labels[:, 0, 0], labels[:, -1, -1] = 0, 1  # Both classes in each image.
  return logits, labels


@pytest.mark.parametrize('seed', range(2))
def test_boundary_binary_is_kervadec(seed):
  logits, labels = _binary_inputs(seed)
  labels[0, 2, 3] = IGNORE
  probs = _softmax(logits)
  total, count = 0.0, 0
  for n in range(labels.shape[0]):
    pos = labels[n] == 1
    neg = ~pos
    # Kervadec's one_hot2dist: edt(neg) * neg - (edt(pos) - 1) * pos.
    phi = (ndimage.distance_transform_edt(neg) * neg
           - (ndimage.distance_transform_edt(pos) - 1) * pos)
    valid = labels[n] != IGNORE
    total += np.sum((phi * probs[n, ..., 1])[valid])
    count += valid.sum()
  got = float(dl.boundary_loss(logits, labels, IGNORE, (0.0, 1.0), **_batch_maps(labels, 2)))
  np.testing.assert_allclose(got, total / count, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('seed', range(2))
def test_hausdorff_binary_foreground_form(seed):
  logits, labels = _binary_inputs(seed)
  probs = _softmax(logits)
  fg = probs[..., 1]
  total = 0.0
  for n in range(labels.shape[0]):
    pred, gt = fg[n] > 0.5, labels[n] == 1
    assert 0 < pred.sum() < pred.size
    dist = lambda m: ndimage.distance_transform_edt(m) + ndimage.distance_transform_edt(~m)
    total += np.sum((fg[n] - gt) ** 2 * (dist(pred) ** 2 + dist(gt) ** 2))
  want = total / labels.size
  got = float(dl.hausdorff_dt_loss(logits, labels, IGNORE, (0.0, 1.0), **_batch_maps(labels, 2)))
  np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize('seed', range(2))
def test_dpce_binary_form(seed):
  logits, labels = _binary_inputs(seed)
  labels[:, 1:5, 1:4] = 1  # A blob, so that both classes are more than one pixel thick (the
  labels[:, 5:, :] = 0     # reference divides 0 by 0 otherwise).
  log_p = np.log(_softmax(logits))
  total = 0.0
  for n in range(labels.shape[0]):
    penalty = np.ones(labels.shape[1:])
    for mask in (labels[n] == 1, labels[n] == 0):
      e = ndimage.distance_transform_edt(mask)  # The reference, line by line:
      inverted = (e.max() - e) * mask
      penalty += inverted / inverted.max()
    ce = -np.where(labels[n] == 1, log_p[n, ..., 1], log_p[n, ..., 0])
    total += np.sum(penalty * ce)
  got = float(dl.dpce_loss(logits, labels, IGNORE, **_batch_maps(labels, 2)))
  np.testing.assert_allclose(got, total / labels.size, rtol=1e-5)
