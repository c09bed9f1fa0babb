"""Region losses against direct float64 NumPy computations on tiny random inputs."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semseg_jax import losses
from semseg_jax.losses import region as rl
from tests.helpers import loss_checks

IGNORE = 255
NUM_CLASSES = 4


def _inputs(seed, num_classes=NUM_CLASSES, shape=(2, 5, 6)):
  rng = np.random.default_rng(seed)
  logits = (rng.normal(size=(*shape, num_classes)) * 2).astype(np.float32)
  labels = rng.integers(0, num_classes - 1, size=shape)  # The last class never occurs.
  labels[rng.random(shape) < 0.25] = IGNORE
  return logits, labels


def _softmax(logits):
  x = logits.astype(np.float64)
  x = x - x.max(-1, keepdims=True)
  e = np.exp(x)
  return e / e.sum(-1, keepdims=True)


def _groups(labels, per_image):
  """Index sets over which statistics are taken: each image, or the whole batch."""
  if per_image:
    return [[(n, i, j) for i in range(labels.shape[1]) for j in range(labels.shape[2])]
            for n in range(labels.shape[0])]
  return [list(np.ndindex(labels.shape))]


def _stats(probs, labels, pixels, c, exponent=1.0):
  """Loops over the valid pixels: I, sum p**exponent, G for class c."""
  inter = psum = gsum = 0.0
  for idx in pixels:
    y = labels[idx]
    if y == IGNORE:
      continue
    p = probs[idx + (c,)]
    gt = 1.0 if y == c else 0.0
    inter += p * gt
    psum += p ** exponent
    gsum += gt
  return inter, psum, gsum


def _wmean(values, weights, mask=None):
  num = den = 0.0
  for c, v in enumerate(values):
    if mask is not None and not mask[c]:
      continue
    w = 1.0 if weights is None else weights[c]
    num += w * v
    den += w
  return num / den if den > 0 else 0.0


def _np_per_class_loss(term):
  """Builds a reference for a loss that is a weighted class mean of term(I, P, G)."""
  def ref(logits, labels, weights=None, per_image=False, exponent=1.0):
    probs = _softmax(logits)
    out = []
    for pixels in _groups(labels, per_image):
      vals = [term(*_stats(probs, labels, pixels, c, exponent)) for c in range(logits.shape[-1])]
      out.append(_wmean(vals, weights))
    return np.mean(out)
  return ref


def _np_dice(smooth=1.0):
  return _np_per_class_loss(lambda i, p, g: 1 - (2 * i + smooth) / (p + g + smooth))


def _np_iou(smooth=1.0):
  return _np_per_class_loss(lambda i, p, g: 1 - (i + smooth) / (p + g - i + smooth))


def _np_tversky(alpha, beta, gamma=1.0, smooth=1.0):
  def term(i, p, g):
    ti = (i + smooth) / (i + alpha * (p - i) + beta * (g - i) + smooth)
    return max(1 - ti, 0.0) ** (1.0 / gamma)
  return _np_per_class_loss(term)


def _np_generalized_dice(logits, labels, weights=None, per_image=False, smooth=1e-5):
  probs = _softmax(logits)
  out = []
  for pixels in _groups(labels, per_image):
    stats = [_stats(probs, labels, pixels, c) for c in range(logits.shape[-1])]
    r = [1.0 / g ** 2 if g > 0 else None for _, _, g in stats]
    rmax = max([x for x in r if x is not None], default=1.0)
    r = [rmax if x is None else x for x in r]
    if weights is not None:
      r = [x * w for x, w in zip(r, weights)]
    w = np.array(r) / sum(r)
    num = 2 * sum(wc * i for wc, (i, _, _) in zip(w, stats)) + smooth
    den = sum(wc * (p + g) for wc, (_, p, g) in zip(w, stats)) + smooth
    out.append(1 - num / den)
  return np.mean(out)


def _np_exp_log(logits, labels, weights=None, per_image=False, w_dice=0.8, w_ce=0.2,
                gamma_dice=0.3, gamma_ce=0.3, smooth=1.0):
  probs = _softmax(logits)
  out = []
  for pixels in _groups(labels, per_image):
    dice_terms = []
    for c in range(logits.shape[-1]):
      i, p, g = _stats(probs, labels, pixels, c)
      dice = (2 * i + smooth) / (p + g + smooth)
      dice_terms.append((-np.log(dice)) ** gamma_dice)
    l_dice = _wmean(dice_terms, weights)
    freq = np.zeros(logits.shape[-1])
    for idx in pixels:
      if labels[idx] != IGNORE:
        freq[labels[idx]] += 1
    total, count = 0.0, 0
    for idx in pixels:
      y = labels[idx]
      if y == IGNORE:
        continue
      wl = (freq.sum() / freq[y]) ** 0.5
      total += wl * (-np.log(probs[idx + (y,)])) ** gamma_ce
      count += 1
    out.append(w_dice * l_dice + w_ce * total / max(count, 1))
  return np.mean(out)


def _np_lovasz_class(errors, fg):
  """The paper's algorithm on one class's valid pixels (Berman et al. 2018, Alg. 1)."""
  if len(errors) == 0:
    return 0.0
  order = np.argsort(-errors, kind='stable')
  e, f = errors[order], fg[order]
  gts = f.sum()
  jac = np.empty(len(e))
  for k in range(len(e)):
    inter = gts - f[:k + 1].sum()
    union = gts + (1 - f[:k + 1]).sum()
    jac[k] = 1 - inter / union
  grad = np.concatenate([jac[:1], np.diff(jac)])
  return float(np.dot(e, grad))


def _np_lovasz(logits, labels, weights=None, per_image=False, classes='present',
               class_fn=_np_lovasz_class):
  probs = _softmax(logits)
  out = []
  for pixels in _groups(labels, per_image):
    pixels = [idx for idx in pixels if labels[idx] != IGNORE]
    vals, mask = [], []
    for c in range(logits.shape[-1]):
      fg = np.array([1.0 if labels[idx] == c else 0.0 for idx in pixels])
      errors = np.abs(fg - np.array([probs[idx + (c,)] for idx in pixels]))
      vals.append(class_fn(errors, fg))
      mask.append(classes == 'all' or fg.sum() > 0)
    out.append(_wmean(vals, weights, mask))
  return np.mean(out)


WEIGHTS = (1.0, 2.0, 0.5, 3.0)

# name -> (jax function, numpy reference taking (logits, labels, weights, per_image), options)
CASES = {
    'dice_exp2': (functools.partial(rl.dice_loss),
                  lambda lg, lb, w, pi: _np_dice()(lg, lb, w, pi, exponent=2.0)),
    'dice_exp1': (functools.partial(rl.dice_loss, exponent=1.0),
                  lambda lg, lb, w, pi: _np_dice()(lg, lb, w, pi, exponent=1.0)),
    'generalized_dice': (rl.generalized_dice_loss, _np_generalized_dice),
    'iou': (rl.iou_loss, lambda lg, lb, w, pi: _np_iou()(lg, lb, w, pi)),
    'tversky': (rl.tversky_loss, lambda lg, lb, w, pi: _np_tversky(0.3, 0.7)(lg, lb, w, pi)),
    'tversky_fp_heavy': (functools.partial(rl.tversky_loss, alpha=0.8, beta=0.2, smooth=0.5),
                         lambda lg, lb, w, pi: _np_tversky(0.8, 0.2, smooth=0.5)(lg, lb, w, pi)),
    'focal_tversky': (rl.focal_tversky_loss,
                      lambda lg, lb, w, pi: _np_tversky(0.3, 0.7, 4 / 3)(lg, lb, w, pi)),
    'focal_tversky_g2': (functools.partial(rl.focal_tversky_loss, gamma=2.0),
                         lambda lg, lb, w, pi: _np_tversky(0.3, 0.7, 2.0)(lg, lb, w, pi)),
    'lovasz_present': (rl.lovasz_softmax_loss, _np_lovasz),
    'lovasz_all': (functools.partial(rl.lovasz_softmax_loss, classes='all'),
                   lambda lg, lb, w, pi: _np_lovasz(lg, lb, w, pi, classes='all')),
    'exp_log': (rl.exp_log_loss, _np_exp_log),
}


@pytest.mark.parametrize('per_image', [False, True])
@pytest.mark.parametrize('weights', [None, WEIGHTS])
@pytest.mark.parametrize('seed', range(3))
@pytest.mark.parametrize('name', sorted(CASES))
def test_matches_numpy(name, seed, weights, per_image):
  fn, ref = CASES[name]
  logits, labels = _inputs(seed)
  got = float(fn(logits, labels, IGNORE, weights, per_image=per_image))
  want = ref(logits, labels, weights, per_image)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize('name', sorted(CASES))
def test_resizes_logits_to_labels(name):
  fn, ref = CASES[name]
  rng = np.random.default_rng(7)
  logits = rng.normal(size=(1, 3, 3, NUM_CLASSES)).astype(np.float32)
  labels = rng.integers(0, 3, size=(1, 6, 5))
  labels[0, 0, :2] = IGNORE
  resized = np.asarray(losses.resize_logits(jnp.asarray(logits), (6, 5)))
  got = float(fn(logits, labels, IGNORE))
  np.testing.assert_allclose(got, ref(resized, labels, None, False), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize('name', sorted(CASES))
def test_jit_grad_finite_and_ignore_exact(name):
  fn, _ = CASES[name]
  logits, labels = _inputs(3)
  value = loss_checks.assert_ignored_pixels_count_nowhere(lambda lg: fn(lg, labels, IGNORE),
                                                          logits, labels, IGNORE)
  np.testing.assert_allclose(value, float(fn(logits, labels, IGNORE)), rtol=1e-6)


@pytest.mark.parametrize('name', sorted(CASES))
def test_all_ignored_is_finite(name):
  fn, _ = CASES[name]
  logits = np.random.default_rng(0).normal(size=(1, 2, 3, 3)).astype(np.float32)
  value = float(fn(logits, np.full((1, 2, 3), IGNORE), IGNORE))
  assert np.isfinite(value)


@pytest.mark.parametrize('name', ['dice_exp2', 'dice_exp1', 'iou', 'tversky', 'focal_tversky',
                                  'generalized_dice', 'lovasz_present', 'lovasz_all', 'exp_log'])
@pytest.mark.parametrize('per_image', [False, True])
def test_perfect_prediction_is_near_zero(name, per_image):
  fn, _ = CASES[name]
  _, labels = _inputs(4)
  logits = 60.0 * jax.nn.one_hot(np.where(labels == IGNORE, 0, labels), NUM_CLASSES)
  value = float(fn(logits, labels, IGNORE, per_image=per_image))
  assert abs(value) < 1e-5
  grad = jax.jit(jax.grad(lambda lg: fn(lg, labels, IGNORE, per_image=per_image)))(logits)
  assert np.all(np.isfinite(np.asarray(grad)))


def test_bad_prediction_is_large():
  _, labels = _inputs(5)
  wrong = 60.0 * jax.nn.one_hot((np.where(labels == IGNORE, 0, labels) + 1) % NUM_CLASSES,
                                NUM_CLASSES)
  for fn in (rl.dice_loss, rl.iou_loss, rl.tversky_loss, rl.lovasz_softmax_loss):
    assert float(fn(wrong, labels, IGNORE)) > 0.8


def test_tversky_half_half_equals_plain_dice():
  logits, labels = _inputs(6)
  a = rl.tversky_loss(logits, labels, IGNORE, alpha=0.5, beta=0.5)
  # TI = (I + s) / ((P + G) / 2 + s) = (2 I + 2 s) / (P + G + 2 s): Dice with smooth 2 s.
  b = rl.dice_loss(logits, labels, IGNORE, exponent=1.0, smooth=2.0)
  np.testing.assert_allclose(float(a), float(b), rtol=1e-6)
  c = rl.focal_tversky_loss(logits, labels, IGNORE, gamma=1.0)
  np.testing.assert_allclose(float(c), float(rl.tversky_loss(logits, labels, IGNORE)), rtol=1e-6)


def test_tversky_alpha_weights_false_positives():
  # One image, two classes, every pixel labelled 0 and predicted as class 1: for class 1 the
  # prediction is all false positives, so raising alpha must raise its term.
  labels = np.zeros((1, 2, 2), np.int64)
  logits = np.zeros((1, 2, 2, 2), np.float32)
  logits[..., 1] = 5.0
  lo = float(rl.tversky_loss(logits, labels, IGNORE, class_weights=(0.0, 1.0), alpha=0.1,
                             beta=0.9))
  hi = float(rl.tversky_loss(logits, labels, IGNORE, class_weights=(0.0, 1.0), alpha=0.9,
                             beta=0.1))
  assert hi > lo


# ---- Lovasz on a tiny case against the Lovasz extension's definition -----------------------


def _jaccard_set_loss(mispredicted, fg):
  """Delta_J(M) = |M| / |{fg} union M| (Berman et al. 2018, Eq. 4); 0 for the empty set."""
  m = set(mispredicted)
  union = set(np.flatnonzero(fg).tolist()) | m
  return len(m) / len(union) if union else 0.0


def _lovasz_by_thresholds(errors, fg):
  """Lovasz extension as the integral over t of Delta({i : m_i >= t}) for t in (0, max m]."""
  levels = sorted(set(errors.tolist()) | {0.0}, reverse=True)
  total = 0.0
  for hi, lo in zip(levels[:-1], levels[1:]):
    total += (hi - lo) * _jaccard_set_loss(np.flatnonzero(errors >= hi).tolist(), fg)
  return total


def _lovasz_by_permutations(errors, fg):
  """Delta_J is submodular, so its Lovasz extension is the maximum over all orderings of the
  greedy sums sum_k m_pi(k) (Delta(S_k) - Delta(S_{k-1}))."""
  best = -np.inf
  for perm in itertools.permutations(range(len(errors))):
    prev, total = 0.0, 0.0
    for k in range(len(perm)):
      cur = _jaccard_set_loss(list(perm[:k + 1]), fg)
      total += errors[perm[k]] * (cur - prev)
      prev = cur
    best = max(best, total)
  return best


@pytest.mark.parametrize('seed', range(3))
def test_lovasz_tiny_matches_extension_definition(seed):
  rng = np.random.default_rng(100 + seed)
  logits = (rng.normal(size=(1, 2, 4, 2)) * 2).astype(np.float32)
  labels = rng.integers(0, 2, size=(1, 2, 4))
  labels[0, 0, 0] = 0
  labels[0, 1, 3] = 1
  labels[0, 1, 0] = IGNORE
  labels[0, 0, 2] = IGNORE  # 6 valid pixels.
  got = float(rl.lovasz_softmax_loss(logits, labels, IGNORE))
  for class_fn in (_lovasz_by_thresholds, _lovasz_by_permutations, _np_lovasz_class):
    want = _np_lovasz(logits, labels, class_fn=class_fn)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
  # Single class absent: 'present' skips it, 'all' includes its max error.
  labels_one = np.where(labels == IGNORE, IGNORE, 0)
  for classes in ('present', 'all'):
    got = float(rl.lovasz_softmax_loss(logits, labels_one, IGNORE, classes=classes))
    want = _np_lovasz(logits, labels_one, classes=classes, class_fn=_lovasz_by_thresholds)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_lovasz_ties_do_not_matter():
  # Equal logits everywhere: all errors tie at 0.5 or so; the result must still match.
  logits = np.zeros((1, 2, 3, 2), np.float32)
  labels = np.array([[[0, 1, 0], [1, IGNORE, 0]]])
  got = float(rl.lovasz_softmax_loss(logits, labels, IGNORE))
  want = _np_lovasz(logits, labels, class_fn=_lovasz_by_thresholds)
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_bad_classes_option():
  logits, labels = _inputs(0)
  with pytest.raises(ValueError):
    rl.lovasz_softmax_loss(logits, labels, IGNORE, classes='some')


def test_bfloat16_logits_computed_in_float32():
  logits, labels = _inputs(1)
  value = rl.dice_loss(jnp.asarray(logits, jnp.bfloat16), labels, IGNORE)
  assert value.dtype == jnp.float32


# ---- Combo loss ----------------------------------------------------------------------------


def _np_combo(logits, labels, weights=None, per_image=False, alpha=0.5, beta=0.5, smooth=1.0,
              eps=1e-7):
  """Taghanaki et al. 2019 with the Dice sum over classes as a weighted mean."""
  probs = _softmax(logits)
  num_classes = logits.shape[-1]
  w = [1.0] * num_classes if weights is None else list(weights)
  out = []
  for pixels in _groups(labels, per_image):
    total, count = 0.0, 0
    for idx in pixels:
      y = labels[idx]
      if y == IGNORE:
        continue
      count += 1
      for c in range(num_classes):
        p = min(max(probs[idx + (c,)], eps), 1 - eps)
        g = 1.0 if y == c else 0.0
        total += w[c] * (beta * g * np.log(p) + (1 - beta) * (1 - g) * np.log(1 - p))
    wce = -total / (count * sum(w)) if count else 0.0
    dice = []
    for c in range(num_classes):
      i, p, g = _stats(probs, labels, pixels, c)
      dice.append((2 * i + smooth) / (p + g + smooth))
    out.append(alpha * wce - (1 - alpha) * _wmean(dice, weights))
  return np.mean(out)


@pytest.mark.parametrize('options', [{}, {'alpha': 0.7, 'beta': 0.8, 'smooth': 0.5},
                                     {'alpha': 0.2, 'beta': 0.3, 'eps': 1e-3}])
@pytest.mark.parametrize('per_image', [False, True])
@pytest.mark.parametrize('weights', [None, WEIGHTS])
@pytest.mark.parametrize('seed', range(2))
def test_combo_matches_numpy(seed, weights, per_image, options):
  logits, labels = _inputs(seed)
  if options.get('eps') == 1e-3:
    logits = logits * 4  # Saturated probabilities, so that the clipping matters.
  got = float(rl.combo_loss(logits, labels, IGNORE, weights, per_image=per_image, **options))
  want = _np_combo(logits, labels, weights, per_image, **options)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_combo_jit_grad_finite_and_ignore_exact():
  logits, labels = _inputs(3)
  logits = logits * 10  # Some probabilities below eps: the clipped logarithms stay finite.
  loss_checks.assert_ignored_pixels_count_nowhere(
      lambda lg: rl.combo_loss(lg, labels, IGNORE, WEIGHTS, beta=0.7), logits, labels, IGNORE)
  everything_ignored = np.full_like(labels, IGNORE)
  assert np.isfinite(float(rl.combo_loss(logits, everything_ignored, IGNORE)))


def test_combo_beta_above_half_penalises_false_negatives():
  # Only class 1 counts (weights [0, 1]) and only the cross-entropy term (alpha = 1): a false
  # negative (label 1, p_1 = 0.1) must cost more than a false positive (label 0, p_1 = 0.9).
  logits = np.zeros((1, 1, 1, 2), np.float32)
  logits[..., 0] = np.log(9.0)  # p = (0.9, 0.1)
  fn = float(rl.combo_loss(logits, np.ones((1, 1, 1), np.int64), IGNORE, (0.0, 1.0), alpha=1.0,
                           beta=0.8))
  fp = float(rl.combo_loss(logits[..., ::-1], np.zeros((1, 1, 1), np.int64), IGNORE, (0.0, 1.0),
                           alpha=1.0, beta=0.8))
  np.testing.assert_allclose(fn, -0.8 * np.log(0.1), rtol=1e-5)
  np.testing.assert_allclose(fp, -0.2 * np.log(0.1), rtol=1e-5)
  assert fn > fp


def test_combo_perfect_prediction_is_alpha_minus_one():
  _, labels = _inputs(4)
  logits = 60.0 * jax.nn.one_hot(np.where(labels == IGNORE, 0, labels), NUM_CLASSES)
  # Every class's Dice is 1 (the absent class: smooth / smooth), the clipped WCE about 1e-7.
  value = float(rl.combo_loss(logits, labels, IGNORE, alpha=0.3))
  np.testing.assert_allclose(value, 0.3 - 1.0, atol=1e-5)
