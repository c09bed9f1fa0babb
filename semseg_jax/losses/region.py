"""Region (overlap) losses for semantic segmentation: Dice, generalised Dice, soft IoU,
Tversky, focal Tversky, Lovasz-softmax and the exponential-logarithmic loss.

Shared conventions (every function here):

* `logits` are `[N, h, w, C]` in any float dtype; they are resized bilinearly to the labels'
  size `[N, H, W]` (`common.resize_logits`) and all arithmetic is in float32.
* `p` is the softmax over C; `g` is the one-hot encoding of the integer labels.
* Pixels whose label equals `ignore_index` are excluded from every sum (their `p` and `g`
  are zeroed before any statistic is taken), so changing their logits never changes a loss.
* Per-class statistics over a set of pixels X (all valid pixels):
    I_c = sum_X p_c * g_c,  P_c = sum_X p_c,  G_c = sum_X g_c,
    FP_c = sum_X p_c * (1 - g_c) = P_c - I_c,  FN_c = sum_X (1 - p_c) * g_c = G_c - I_c.
* Reduction: with `per_image=False` (default) X is every valid pixel of the whole batch and
  the loss is the (weighted) mean of the per-class terms. With `per_image=True` the statistics
  and the class mean are computed for each image separately and the N results are averaged
  (every image counts, also one whose pixels are all ignored).
* `class_weights` (optional, C non-negative floats w_c) turns the mean over classes into the
  normalised weighted mean  sum_c w_c L_c / sum_c w_c  (the plain mean when None). A class
  mean over an empty set of classes (e.g. no class present) is 0.
* All functions are pure and jittable; the non-array options must be static under `jax.jit`.
"""

from typing import Optional, Sequence

import jax
import jax.numpy as jnp

from semseg_jax.losses import common


def _prepare(logits, labels, ignore_index):
  """(float32 logits at the labels' size, masked probabilities, masked one-hot, valid mask)."""
  prepared = common.prepare(logits, labels, ignore_index)
  return prepared.logits, prepared.probs, prepared.onehot, prepared.valid


def _stat(x: jax.Array, per_image: bool) -> jax.Array:
  """Sums `[N, H, W, C]` to `[B, C]`, B = N per image or 1 for the whole batch."""
  s = jnp.sum(x, axis=(1, 2) if per_image else (0, 1, 2))
  return s if per_image else s[None]


def _class_mean(per_class: jax.Array, class_weights, mask=None) -> jax.Array:
  """Weighted mean of `[B, C]` over C, restricted to `mask` (`[B, C]`) if given, then mean
  over B."""
  weights = common.class_weight_vector(class_weights, per_class.shape[-1])
  return jnp.mean(common.class_average(per_class, weights, mask))


def dice_loss(logits: jax.Array, labels: jax.Array, ignore_index: int = 255,
              class_weights: Optional[Sequence[float]] = None, *, smooth: float = 1.0,
              exponent: float = 2.0, per_image: bool = False) -> jax.Array:
  """Multi-class soft Dice loss.

    L_c = 1 - (2 * I_c + smooth) / (sum_X p_c**exponent + sum_X g_c**exponent + smooth)
    loss = weighted mean over classes of L_c  (see the module docstring for reduction).

  `exponent=2` (default) is the squared-denominator form of mmsegmentation 0.x's `DiceLoss`
  (smooth=1, exponent=2) and of Milletari et al. 2016 (V-Net); `exponent=1` gives plain sums
  P_c + G_c (segmentation_models_pytorch / mmseg `naive_dice`). Since g is one-hot,
  sum g**exponent = G_c for any exponent. Unlike mmseg 0.x, ignored pixels are also left out of
  the denominator. Every class counts in the mean, absent ones included (their term is
  1 - smooth / (sum p_c**exponent + smooth)).
  """
  _, p, g, _ = _prepare(logits, labels, ignore_index)
  inter = _stat(p * g, per_image)
  den = _stat(p ** exponent, per_image) + _stat(g, per_image)
  per_class = 1.0 - (2.0 * inter + smooth) / (den + smooth)
  return _class_mean(per_class, class_weights)


def generalized_dice_loss(logits: jax.Array, labels: jax.Array, ignore_index: int = 255,
                          class_weights: Optional[Sequence[float]] = None, *,
                          smooth: float = 1e-5, per_image: bool = False) -> jax.Array:
  """Generalised Dice loss (Sudre et al. 2017, arXiv:1707.03237).

    r_c = 1 / G_c**2 for classes with G_c > 0; an absent class (G_c = 0) gets the largest r of
          the present classes (as NiftyNet / MONAI do, instead of an infinite weight); all ones
          if no class is present.  r_c is multiplied by class_weights[c] if given.
    w_c = r_c / sum_k r_k   (normalised; the unsmoothed ratio does not depend on this scale)
    loss = 1 - (2 * sum_c w_c I_c + smooth) / (sum_c w_c (P_c + G_c) + smooth)

  P_c and G_c are plain sums. `smooth` defaults to 1e-5 (as MONAI) rather than 1 because the
  weighted sums are of the order of the smallest present class's pixel count. With
  `per_image=True` weights and loss are computed per image and averaged over images.
  """
  _, p, g, _ = _prepare(logits, labels, ignore_index)
  inter = _stat(p * g, per_image)
  psum = _stat(p, per_image)
  gsum = _stat(g, per_image)
  present = gsum > 0
  r = jnp.where(present, 1.0 / jnp.where(present, gsum, 1.0) ** 2, 0.0)
  rmax = jnp.max(r, axis=-1, keepdims=True)
  r = jnp.where(present, r, jnp.where(rmax > 0, rmax, 1.0))
  if class_weights is not None:
    r = r * jnp.asarray(class_weights, jnp.float32)
  w = r / jnp.sum(r, axis=-1, keepdims=True)
  num = 2.0 * jnp.sum(w * inter, axis=-1) + smooth
  den = jnp.sum(w * (psum + gsum), axis=-1) + smooth
  return jnp.mean(1.0 - num / den)


def iou_loss(logits: jax.Array, labels: jax.Array, ignore_index: int = 255,
             class_weights: Optional[Sequence[float]] = None, *, smooth: float = 1.0,
             per_image: bool = False) -> jax.Array:
  """Soft Jaccard (IoU) loss.

    L_c = 1 - (I_c + smooth) / (P_c + G_c - I_c + smooth),  plain sums;
    loss = weighted mean over all classes of L_c.

  Same form as segmentation_models_pytorch's `JaccardLoss` (whose default smooth is 0).
  """
  _, p, g, _ = _prepare(logits, labels, ignore_index)
  inter = _stat(p * g, per_image)
  union = _stat(p, per_image) + _stat(g, per_image) - inter
  per_class = 1.0 - (inter + smooth) / (union + smooth)
  return _class_mean(per_class, class_weights)


def _tversky_index(p, g, alpha, beta, smooth, per_image):
  tp = _stat(p * g, per_image)
  fp = _stat(p, per_image) - tp
  fn = _stat(g, per_image) - tp
  return (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)


def tversky_loss(logits: jax.Array, labels: jax.Array, ignore_index: int = 255,
                 class_weights: Optional[Sequence[float]] = None, *, alpha: float = 0.3,
                 beta: float = 0.7, smooth: float = 1.0, per_image: bool = False) -> jax.Array:
  """Tversky loss (Salehi et al. 2017, arXiv:1706.05721).

    TI_c = (TP_c + smooth) / (TP_c + alpha * FP_c + beta * FN_c + smooth)
    TP_c = I_c,  FP_c = sum p_c (1 - g_c),  FN_c = sum (1 - p_c) g_c
    loss = weighted mean over all classes of (1 - TI_c)

  As in the paper (|P and G| / (|P and G| + alpha |P - G| + beta |G - P|)), alpha weights the
  false positives and beta the false negatives; the defaults alpha=0.3, beta=0.7 (the paper's
  best setting, also mmseg's `TverskyLoss`) penalise false negatives more.
  alpha = beta = 0.5 gives the Dice loss with exponent 1 and smoothing 2 * smooth.
  """
  _, p, g, _ = _prepare(logits, labels, ignore_index)
  ti = _tversky_index(p, g, alpha, beta, smooth, per_image)
  return _class_mean(1.0 - ti, class_weights)


def focal_tversky_loss(logits: jax.Array, labels: jax.Array, ignore_index: int = 255,
                       class_weights: Optional[Sequence[float]] = None, *, alpha: float = 0.3,
                       beta: float = 0.7, gamma: float = 4.0 / 3.0, smooth: float = 1.0,
                       per_image: bool = False) -> jax.Array:
  """Focal Tversky loss (Abraham & Khan 2019, arXiv:1810.07842).

    loss = weighted mean over all classes of (1 - TI_c) ** (1 / gamma)

  with TI_c as in `tversky_loss`. The exponent follows the paper's convention 1/gamma, with the
  paper's default gamma = 4/3, i.e. an exponent of 0.75 (the paper sums over classes; we average,
  which only rescales by C). Note mmseg's `TverskyLoss(gamma=...)` instead uses the exponent
  gamma itself: pass gamma=1/g_mmseg to reproduce it. gamma=1 gives `tversky_loss`.
  Where 1 - TI_c <= 0 the term is 0 with zero gradient.
  """
  _, p, g, _ = _prepare(logits, labels, ignore_index)
  ti = _tversky_index(p, g, alpha, beta, smooth, per_image)
  return _class_mean(common.positive_power(1.0 - ti, 1.0 / gamma), class_weights)


def _lovasz_grad(fg_sorted: jax.Array) -> jax.Array:
  """Gradient of the Lovasz extension of the Jaccard loss w.r.t. errors sorted descending.

  `fg_sorted` is `[..., M]` (0/1 float). With gts = sum fg, the Jaccard loss of the first k
  sorted pixels being wrong is J_k = 1 - (gts - cumfg_k) / (gts + cumbg_k), and the gradient
  is the difference J_k - J_{k-1} (J_0 = 0).
  """
  gts = jnp.sum(fg_sorted, axis=-1, keepdims=True)
  inter = gts - jnp.cumsum(fg_sorted, axis=-1)
  union = gts + jnp.cumsum(1.0 - fg_sorted, axis=-1)
  # union >= 1 whenever gts > 0 or after the first background pixel; it can only be 0 if gts = 0
  # and the first element is foreground, which is impossible. Guard anyway.
  jac = 1.0 - inter / jnp.maximum(union, 1.0)
  return jnp.concatenate([jac[..., :1], jac[..., 1:] - jac[..., :-1]], axis=-1)


def lovasz_softmax_loss(logits: jax.Array, labels: jax.Array, ignore_index: int = 255,
                        class_weights: Optional[Sequence[float]] = None, *,
                        classes: str = 'present', per_image: bool = False) -> jax.Array:
  """Lovasz-softmax loss (Berman, Rannen Triki & Blaschko, CVPR 2018, arXiv:1705.08790).

  For each class c, over the valid pixels: errors m_i = |g_c(i) - p_c(i)|, sorted descending
  (permutation pi); the loss is the Lovasz extension of the Jaccard loss,
    L_c = sum_k m_pi(k) * (J_k - J_{k-1}),  J_k = 1 - (G_c - F_k) / (G_c + B_k),  J_0 = 0,
  where F_k / B_k count the foreground / background pixels among the first k sorted ones.
  loss = weighted mean of L_c over the classes present in the labels (classes='present', the
  reference default; 0 if none) or over all classes (classes='all').

  Jittable with static shapes: ignored pixels get error 0 and foreground 0. Errors are >= 0,
  so in the descending order every pixel with a positive error precedes them; the terms of
  those pixels only depend on the foreground flags of the pixels before them and on G_c, which
  ignored pixels do not change; every later term is multiplied by an error of 0. The result
  therefore equals the reference that drops ignored pixels, exactly (up to the order of ties,
  which does not change the Lovasz extension's value).
  `per_image=True` evaluates the loss per image and averages over the N images, as the
  reference does.
  """
  if classes not in ('present', 'all'):
    raise ValueError(f"classes must be 'present' or 'all', got {classes!r}")
  _, p, g, _ = _prepare(logits, labels, ignore_index)
  n, h, w, c = p.shape
  if per_image:
    p = p.reshape(n, h * w, c)
    g = g.reshape(n, h * w, c)
  else:
    p = p.reshape(1, n * h * w, c)
    g = g.reshape(1, n * h * w, c)
  errors = jnp.abs(g - p)  # ignored pixels: p = g = 0, hence error 0 and foreground 0.
  # Move classes before pixels: [B, C, M].
  errors = jnp.swapaxes(errors, 1, 2)
  fg = jnp.swapaxes(g, 1, 2)
  order = jnp.argsort(-errors, axis=-1)
  errors_sorted = jnp.take_along_axis(errors, order, axis=-1)
  fg_sorted = jax.lax.stop_gradient(jnp.take_along_axis(fg, order, axis=-1))
  per_class = jnp.sum(errors_sorted * _lovasz_grad(fg_sorted), axis=-1)  # [B, C]
  mask = jnp.sum(fg, axis=-1) > 0 if classes == 'present' else None
  return _class_mean(per_class, class_weights, mask)


def exp_log_loss(logits: jax.Array, labels: jax.Array, ignore_index: int = 255,
                 class_weights: Optional[Sequence[float]] = None, *, w_dice: float = 0.8,
                 w_ce: float = 0.2, gamma_dice: float = 0.3, gamma_ce: float = 0.3,
                 smooth: float = 1.0, per_image: bool = False) -> jax.Array:
  """Exponential logarithmic loss (Wong et al., MICCAI 2018, arXiv:1809.00076).

    loss  = w_dice * L_dice + w_ce * L_ce
    Dice_c = (2 * I_c + smooth) / (P_c + G_c + smooth)          (plain sums, as in the paper)
    L_dice = weighted mean over all classes of (-ln Dice_c) ** gamma_dice
    f_k    = number of valid pixels labelled k;  w_l = (sum_k f_k / f_l) ** 0.5
    L_ce   = (1 / |X|) * sum_{x in X} w_{l(x)} * (-ln p_{l(x)}(x)) ** gamma_ce

  Defaults follow the paper: w_dice=0.8, w_ce=0.2, gamma_dice=gamma_ce=0.3, smooth (its
  epsilon) = 1. Frequencies f_k are taken from the labels of the batch (or of each image with
  `per_image=True`; then both terms are per image and averaged over images; an image with no
  valid pixel contributes L_ce = 0). `class_weights` only weights the class mean of L_dice.
  ln p is computed with log_softmax; powers of values <= 0 are taken as 0 (zero gradient).
  """
  logits, p, g, valid = _prepare(logits, labels, ignore_index)
  inter = _stat(p * g, per_image)
  dice = (2.0 * inter + smooth) / (_stat(p, per_image) + _stat(g, per_image) + smooth)
  l_dice = _class_mean(common.positive_power(-jnp.log(dice), gamma_dice), class_weights)

  freq = _stat(g, per_image)  # [B, C]
  total = jnp.sum(freq, axis=-1, keepdims=True)
  label_w = jnp.where(freq > 0, jnp.sqrt(total / jnp.where(freq > 0, freq, 1.0)), 0.0)
  nll = -jnp.sum(jax.nn.log_softmax(logits, axis=-1) * g, axis=-1)  # [N, H, W], 0 if ignored
  pixel_term = common.positive_power(nll, gamma_ce)
  if per_image:
    pix_w = jnp.einsum('nhwc,nc->nhw', g, label_w)
    num = jnp.sum(pix_w * pixel_term, axis=(1, 2))
    count = jnp.sum(valid, axis=(1, 2))
  else:
    pix_w = jnp.einsum('nhwc,c->nhw', g, label_w[0])
    num = jnp.sum(pix_w * pixel_term)[None]
    count = jnp.sum(valid)[None]
  l_ce = jnp.mean(num / jnp.maximum(count, 1).astype(jnp.float32))
  return w_dice * l_dice + w_ce * l_ce


def combo_loss(logits: jax.Array, labels: jax.Array, ignore_index: int = 255,
               class_weights: Optional[Sequence[float]] = None, *, alpha: float = 0.5,
               beta: float = 0.5, smooth: float = 1.0, eps: float = 1e-7,
               per_image: bool = False) -> jax.Array:
  """Combo loss (Taghanaki et al. 2019, Comput. Med. Imaging Graph., arXiv:1805.02798).

    loss  = alpha * WCE - (1 - alpha) * DSC
    WCE   = -1 / (|X| sum_c w_c) * sum_{i in X} sum_c w_c [beta g_ic ln p_ic
                                                         + (1 - beta) (1 - g_ic) ln(1 - p_ic)]
    DSC   = weighted mean over all classes of (2 I_c + smooth) / (P_c + G_c + smooth)

  with p clipped to [eps, 1 - eps] inside the logarithms, plain sums and w = class_weights
  (ones if None, so the WCE normaliser is |X| C). beta > 0.5 penalises false negatives more,
  beta < 0.5 false positives. This is the paper's equation except that its sum of the K
  per-class Dice scores is written as a (weighted) mean, so that alpha keeps its meaning
  whatever the number of classes; the loss is therefore bounded below by alpha - 1 rather
  than by -(1 - alpha) K. With `per_image=True` both terms are computed per image and averaged
  (an image without valid pixels has WCE 0).
  """
  _, p, g, valid = _prepare(logits, labels, ignore_index)
  w = common.class_weight_vector(class_weights, p.shape[-1])
  clipped = jnp.clip(p, eps, 1.0 - eps)
  bce = beta * g * jnp.log(clipped) + (1.0 - beta) * (1.0 - g) * jnp.log(1.0 - clipped)
  per_pixel = jnp.where(valid, jnp.sum(bce * w, axis=-1), 0.0)  # [N, H, W]
  axes = (1, 2) if per_image else (0, 1, 2)
  count = jnp.sum(valid, axis=axes).astype(jnp.float32)
  denom = jnp.maximum(count, 1.0) * jnp.sum(w)
  wce = -jnp.sum(per_pixel, axis=axes) / jnp.where(denom > 0, denom, 1.0)

  inter = _stat(p * g, per_image)
  dice = (2.0 * inter + smooth) / (_stat(p, per_image) + _stat(g, per_image) + smooth)
  return alpha * jnp.mean(wce) - (1.0 - alpha) * _class_mean(dice, class_weights)
