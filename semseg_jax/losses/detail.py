"""The detail aggregation loss of STDC-Seg (Fan et al., "Rethinking BiSeNet For Real-time
Semantic Segmentation", CVPR 2021, Sec. 3.3), as mmsegmentation 1.2.2 computes it
(`mmseg/models/decode_heads/stdc_head.py` STDCHead.loss_by_feat, `losses/dice_loss.py`,
`losses/cross_entropy_loss.py` binary_cross_entropy) and the official DetailAggregateLoss
(MichaelFan01/STDC-Seg `loss/detail_loss.py`).

Boundary targets from a label map L (int, ignore label 255 included):
1. Laplacian edges at strides 1, 2, 4: the 3x3 kernel [[-1,-1,-1],[-1,8,-1],[-1,-1,-1]] on the
   float label map with zero padding 1 and that stride (output size (H - 1) // s + 1, output k
   centred on input k * s), clamped at 0 and thresholded (> 0.1 -> 1, else 0).
2. The stride-2 and stride-4 maps are upsampled to H x W with PyTorch's nearest resize.
3. Fusion: 0.6 * e1 + 0.3 * e2 + 0.1 * e4 (a fixed 1x1 conv; the paper calls it trainable, but
   the thresholds cut it off the graph, and mmseg and the official code keep it constant) in
   float32, thresholded again (> 0.1). A lone 0.1 * e4 equals the float32 threshold, so it is
   not a boundary: the target is e1 OR e2 in practice.
Ignore pixels get no special treatment (mmseg 1.2.2 and the official code alike): 255 is a label
value like any other, so a 255 region's rim is a boundary, pixels next to it (smaller values)
are not, and no pixel is excluded from the loss. The Laplacian is positive only on the
larger-valued side of a label change, and at the image border (zero padding) on any class > 0.

Loss: two terms, `detail_bce` and `detail_dice` (weights 1.0 and 1.0 in the mmseg config and the
official train.py); the boundary logits are resized to the label size (bilinear,
align_corners=True: STDCHead.align_corners), then
- binary cross-entropy with logits, averaged over all pixels;
- Dice (mmseg 1.2.2's V-Net form, `naive_dice=False`, eps 1e-3): per image
  1 - 2 sum(p t) / (sum(p^2) + eps + sum(t^2) + eps) with p = sigmoid(logits), averaged over
  the batch.
The official code's Dice differs: 1 - (2 sum(p t) + 1) / (sum(p) + sum(t) + 1) (smooth 1,
exponent 1); mmseg 0.x's: smooth 1, exponent 2, per class of a softmax. mmseg 1.2.2 itself runs
its 2-channel STDCHead output through one-hot targets (see models/stdc.py); this module takes
the single boundary-logit channel of the paper and the official code.
"""

import jax
import jax.numpy as jnp

from semseg_jax.models.layers import resize_align_corners, resize_nearest

BOUNDARY_THRESHOLD = 0.1
FUSION_WEIGHTS = (0.6, 0.3, 0.1)  # Strides 1, 2, 4.
DICE_EPS = 1e-3


def laplacian_edges(labels: jax.Array, stride: int) -> jax.Array:
  """Thresholded Laplacian of the float label map [N, H, W] at `stride` (zero padding 1)."""
  h, w = labels.shape[1:]
  padded = jnp.pad(labels, ((0, 0), (1, 1), (1, 1)))
  window_sum = sum(padded[:, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3))
  laplacian = 9.0 * labels - window_sum  # 8 * centre - the 8 neighbours.
  return (laplacian[:, ::stride, ::stride] > BOUNDARY_THRESHOLD).astype(jnp.float32)


def boundary_targets(labels: jax.Array) -> jax.Array:
  """STDC's detail ground truth: float32 [N, H, W] in {0, 1} from int labels [N, H, W]."""
  labels = labels.astype(jnp.float32)
  size = labels.shape[1:]
  fused = jnp.zeros(labels.shape, jnp.float32)
  for stride, weight in zip((1, 2, 4), FUSION_WEIGHTS):
    edges = resize_nearest(laplacian_edges(labels, stride), size, axes=(1, 2))
    fused = fused + jnp.float32(weight) * edges
  return (fused > jnp.float32(BOUNDARY_THRESHOLD)).astype(jnp.float32)


def binary_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Mean sigmoid binary cross-entropy of logits against {0, 1} targets (same shape)."""
  logits = logits.astype(jnp.float32)
  losses = jnp.maximum(logits, 0) - logits * targets + jnp.log1p(jnp.exp(-jnp.abs(logits)))
  return jnp.mean(losses)


def dice(probs: jax.Array, targets: jax.Array, eps: float = DICE_EPS) -> jax.Array:
  """mmseg 1.2.2's Dice loss (V-Net form): per image 1 - 2 sum(p t) / (sum(p^2) + eps +
  sum(t^2) + eps), averaged over the batch (axis 0)."""
  probs = probs.reshape(probs.shape[0], -1).astype(jnp.float32)
  targets = targets.reshape(targets.shape[0], -1).astype(jnp.float32)
  overlap = jnp.sum(probs * targets, axis=1)
  denominator = jnp.sum(probs * probs, axis=1) + eps + jnp.sum(targets * targets, axis=1) + eps
  return jnp.mean(1.0 - 2.0 * overlap / denominator)


def _targets_and_logits(detail_logits: jax.Array, labels: jax.Array):
  """(boundary targets [N, H, W], boundary logits resized to H x W with align_corners=True)."""
  targets = boundary_targets(jnp.asarray(labels))
  logits = resize_align_corners(detail_logits.astype(jnp.float32), labels.shape[1:])[..., 0]
  return targets, logits


def detail_bce(detail_logits: jax.Array, labels: jax.Array, ignore_index: int = 255,
               class_weights=None) -> jax.Array:
  """The BCE half of STDC's detail loss: boundary logits [N, h, w, 1] against the boundary
  targets of int labels [N, H, W]. ignore_index and class_weights are not used: the
  references treat the ignore label as a value and weight no class."""
  del ignore_index, class_weights
  targets, logits = _targets_and_logits(detail_logits, labels)
  return binary_cross_entropy(logits, targets)


def detail_dice(detail_logits: jax.Array, labels: jax.Array, ignore_index: int = 255,
                class_weights=None) -> jax.Array:
  """The Dice half of STDC's detail loss (mmseg 1.2.2's form), as `detail_bce`."""
  del ignore_index, class_weights
  targets, logits = _targets_and_logits(detail_logits, labels)
  return dice(jax.nn.sigmoid(logits), targets)
