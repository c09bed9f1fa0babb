"""Metrics against brute-force per-class loops on random inputs."""

import math

import numpy as np
import pytest

from semseg_jax import metrics


def _brute_force(labels, preds, num_classes, ignore_index):
  """Counts and metrics one pixel and one class at a time."""
  conf = np.zeros((num_classes, num_classes), np.int64)
  for l, p in zip(labels.ravel(), preds.ravel()):
    if l != ignore_index:
      conf[l, p] += 1
  ious, accs, dices, precisions, fscores = [], [], [], [], []
  total = sum(int((labels == c).sum()) for c in range(num_classes))
  fw = 0.0
  for c in range(num_classes):
    gt = int(((labels == c)).sum())
    pr = int(((preds == c) & (labels != ignore_index)).sum())
    tp = int(((labels == c) & (preds == c)).sum())
    ious.append(tp / (gt + pr - tp) if gt + pr > 0 else math.nan)
    accs.append(tp / gt if gt > 0 else math.nan)
    dices.append(2 * tp / (gt + pr) if gt + pr > 0 else math.nan)
    precisions.append(tp / pr if pr > 0 else math.nan)
    if math.isnan(precisions[-1]) or math.isnan(accs[-1]):
      fscores.append(math.nan)
    else:
      p, r = precisions[-1], accs[-1]
      fscores.append(2 * p * r / (p + r) if p + r > 0 else 0.0)
    if gt > 0:
      fw += gt / total * ious[-1]
  correct = sum(int(((labels == c) & (preds == c)).sum()) for c in range(num_classes))
  nanmean = lambda xs: 100 * np.mean([x for x in xs if not math.isnan(x)])
  return conf, {'aAcc': 100 * correct / total, 'mIoU': nanmean(ious), 'mAcc': nanmean(accs),
                'mDice': nanmean(dices), 'FWIoU': 100 * fw, 'IoU': ious,
                'mPrecision': nanmean(precisions), 'mRecall': nanmean(accs),
                'mFscore': nanmean(fscores)}


@pytest.mark.parametrize('seed', range(4))
def test_metrics_match_brute_force(seed):
  rng = np.random.default_rng(seed)
  num_classes = int(rng.integers(2, 7))
  shape = (2, int(rng.integers(3, 9)), int(rng.integers(3, 9)))
  # Leave some classes out of the ground truth, some out of both, and ignore some pixels.
  labels = rng.integers(0, max(num_classes - 1, 1), size=shape)
  preds = rng.integers(0, num_classes, size=shape)
  labels[rng.random(shape) < 0.2] = 255
  conf = np.asarray(metrics.confusion_matrix(labels, preds, num_classes, 255))
  expected_conf, expected = _brute_force(labels, preds, num_classes, 255)
  np.testing.assert_array_equal(conf, expected_conf)
  names = [f'c{i}' for i in range(num_classes)]
  result = metrics.summary_metrics(conf, names)
  for key in ('aAcc', 'mIoU', 'mAcc', 'mDice', 'FWIoU', 'mPrecision', 'mRecall', 'mFscore'):
    assert result[key] == pytest.approx(expected[key], rel=1e-9), key
  for name, iou in zip(names, expected['IoU']):
    got = result['per_class_IoU'][name]
    assert (math.isnan(got) and math.isnan(iou)) or got == pytest.approx(100 * iou)


def test_mask_excludes_pixels():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 3, size=(2, 5, 5))
  preds = rng.integers(0, 3, size=(2, 5, 5))
  mask = rng.random((2, 5, 5)) < 0.5
  masked = np.asarray(metrics.confusion_matrix(labels, preds, 3, 255, mask))
  expected = np.asarray(metrics.confusion_matrix(np.where(mask, labels, 255), preds, 3, 255))
  np.testing.assert_array_equal(masked, expected)


def test_class_absent_from_both_is_left_out():
  conf = np.array([[5, 1, 0], [2, 3, 0], [0, 0, 0]])
  result = metrics.summary_metrics(conf, ['a', 'b', 'c'])
  assert math.isnan(result['per_class_IoU']['c'])
  assert result['mIoU'] == pytest.approx(100 * (5 / 8 + 3 / 6) / 2)
  assert 'c' in metrics.format_table(result, ['a', 'b', 'c'])


def test_predicted_but_absent_class_counts_in_miou():
  # Class 2 never occurs in the ground truth but is predicted: IoU 0 counts, Acc is left out.
  conf = np.array([[4, 0, 1], [0, 5, 0], [0, 0, 0]])
  result = metrics.summary_metrics(conf, ['a', 'b', 'c'])
  assert result['per_class_IoU']['c'] == 0.0
  assert result['mIoU'] == pytest.approx(100 * (0.8 + 1.0 + 0.0) / 3)
  assert result['mAcc'] == pytest.approx(100 * (0.8 + 1.0) / 2)


def test_confusion_matrix_metric_merges_batches_into_the_dataset_matrix():
  """The clu metric summed over batches (inside jit, then on the host in int64) equals the
  brute-force count over the whole random set, masked pixels and ignore labels included."""
  import jax  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(7)
  num_classes, ignore = 5, 255
  labels = rng.integers(0, num_classes, (6, 9, 11))
  labels[rng.random(labels.shape) < 0.2] = ignore
  labels[:, :, 0] = 3  # Masked out below: must not count.
  preds = rng.integers(0, num_classes, labels.shape)
  mask = np.ones(labels.shape, bool)
  mask[:, :, 0] = False
  step = jax.jit(lambda l, p, m: metrics.ConfusionMatrix.from_model_output(
      labels=l, preds=p, mask=m, num_classes=num_classes, ignore_index=ignore))
  total = metrics.ConfusionMatrix.empty()
  running = None
  for start in range(0, 6, 2):
    batch = step(labels[start:start + 2], preds[start:start + 2], mask[start:start + 2])
    running = batch if running is None else running.merge(batch)
    if start == 2:  # What the evaluation loop does before int32 could overflow.
      total, running = total.merge(running.to_host()), None
  total = total.merge(running.to_host())
  expected, _ = _brute_force(labels[:, :, 1:], preds[:, :, 1:], num_classes, ignore)
  assert total.compute().dtype == np.int64
  np.testing.assert_array_equal(total.compute(), expected)
