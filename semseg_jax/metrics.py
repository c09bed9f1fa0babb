"""Segmentation metrics from one dataset-level confusion matrix.

The matrix is [C, C] with rows = ground truth and columns = prediction, summed over the whole
dataset (all devices and hosts) before any metric is derived. Conventions (mmsegmentation's):
a class's IoU and Dice are left out of the means (nan) when the class is absent from both the
ground truth and the prediction; its accuracy (= recall) is left out when it is absent from the
ground truth, its precision when it is never predicted, its F-score when either is undefined.
FWIoU weights each class's IoU by its ground-truth pixel frequency. Per-batch averages of mIoU
are never computed.
"""

from typing import Any, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np
from clu import metrics as clu_metrics


def confusion_matrix(labels: jax.Array, preds: jax.Array, num_classes: int,
                     ignore_index: int = 255, mask: jax.Array | None = None) -> jax.Array:
  """int32 [C, C] counts of (label, prediction) pairs over pixels that count (jittable).

  A pixel counts when its label is not `ignore_index` and `mask` (if given) is true.
  """
  valid = labels != ignore_index
  if mask is not None:
    valid &= mask
  index = jnp.where(valid, labels * num_classes + preds, 0).reshape(-1)
  counts = jnp.zeros(num_classes * num_classes, jnp.int32).at[index].add(
      valid.reshape(-1).astype(jnp.int32))
  return counts.reshape(num_classes, num_classes)


@flax.struct.dataclass
class ConfusionMatrix(clu_metrics.Metric):
  """clu metric holding a confusion matrix; evaluation merges one per batch.

  On the device the counts are int32 (made by `confusion_matrix` inside the jitted step);
  `to_host` moves them into int64 before a running sum could overflow.
  """
  matrix: Any  # [C, C] counts, rows = ground truth; a 0-d zero when empty.

  @classmethod
  def from_model_output(cls, *, labels: jax.Array, preds: jax.Array, num_classes: int,
                        ignore_index: int = 255, mask: jax.Array | None = None,
                        **_) -> 'ConfusionMatrix':
    return cls(confusion_matrix(labels, preds, num_classes, ignore_index, mask))

  @classmethod
  def empty(cls) -> 'ConfusionMatrix':
    return cls(np.zeros((), np.int64))

  def merge(self, other: 'ConfusionMatrix') -> 'ConfusionMatrix':
    return type(self)(self.matrix + other.matrix)

  def to_host(self) -> 'ConfusionMatrix':
    return type(self)(np.asarray(jax.device_get(self.matrix), np.int64))

  def compute(self) -> np.ndarray:
    """The int64 matrix (zeros of the right size need one merged batch)."""
    return np.asarray(jax.device_get(self.matrix), np.int64)


def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  with np.errstate(divide='ignore', invalid='ignore'):
    return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)


def per_class_metrics(confusion: np.ndarray, beta: float = 1.0) -> dict[str, np.ndarray]:
  """IoU, Acc (= Recall), Dice, Precision, Recall and F-score of each class; nan where
  undefined (mmsegmentation's definitions; F-score is nan where precision or recall is)."""
  confusion = np.asarray(confusion, np.float64)
  tp = np.diag(confusion)
  gt = confusion.sum(axis=1)
  pred = confusion.sum(axis=0)
  precision, recall = _divide(tp, pred), _divide(tp, gt)
  with np.errstate(divide='ignore', invalid='ignore'):
    fscore = (1 + beta**2) * precision * recall / (beta**2 * precision + recall)
  fscore = np.where(np.isnan(precision) | np.isnan(recall), np.nan,
                    np.where(precision + recall > 0, fscore, 0.0))
  return {'IoU': _divide(tp, gt + pred - tp), 'Acc': recall, 'Dice': _divide(2 * tp, gt + pred),
          'Precision': precision, 'Recall': recall, 'Fscore': fscore}


def summary_metrics(confusion: np.ndarray, class_names: Sequence[str]) -> dict:
  """aAcc, mAcc, mIoU, FWIoU, mDice, mFscore, mPrecision, mRecall in percent, and per-class
  values keyed by class name."""
  confusion = np.asarray(confusion, np.int64)
  if confusion.shape != (len(class_names), len(class_names)):
    raise ValueError(f'confusion matrix {confusion.shape} does not match {len(class_names)} '
                     'class names.')
  per_class = per_class_metrics(confusion)
  gt = confusion.sum(axis=1).astype(np.float64)
  total = gt.sum()
  mean = lambda x: float(np.nanmean(x)) * 100 if np.any(~np.isnan(x)) else float('nan')
  freq = gt / max(total, 1)
  result = {
      'aAcc': float(np.trace(confusion) / max(total, 1)) * 100,
      'mAcc': mean(per_class['Acc']),
      'mIoU': mean(per_class['IoU']),
      'FWIoU': float(np.nansum(freq * per_class['IoU'])) * 100,
      'mDice': mean(per_class['Dice']),
      'mFscore': mean(per_class['Fscore']),
      'mPrecision': mean(per_class['Precision']),
      'mRecall': mean(per_class['Recall']),
  }
  for key in ('IoU', 'Acc', 'Dice', 'Fscore', 'Precision', 'Recall'):
    result[f'per_class_{key}'] = {name: float(v) * 100 for name, v in
                                  zip(class_names, per_class[key])}
  return result


SUMMARY_KEYS = ('aAcc', 'mAcc', 'mIoU', 'FWIoU', 'mDice', 'mFscore', 'mPrecision', 'mRecall')
_TABLE_COLUMNS = ('IoU', 'Acc', 'Dice', 'Fscore', 'Precision')


def format_table(result: dict, class_names: Sequence[str]) -> str:
  """A per-class table and the summary line, for stdout."""
  width = max(10, max(len(n) for n in class_names))
  lines = [f'{"class":<{width}}  ' + '  '.join(f'{c:>9}' for c in _TABLE_COLUMNS)]
  for name in class_names:
    row = [result[f'per_class_{k}'][name] for k in _TABLE_COLUMNS]
    lines.append(f'{name:<{width}}  ' + '  '.join(f'{v:9.2f}' for v in row))
  lines.append('  '.join(f'{k} {result[k]:.2f}' for k in SUMMARY_KEYS))
  return '\n'.join(lines)
