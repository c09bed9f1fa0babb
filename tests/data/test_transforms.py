"""Transforms against hand-computed sizes and independent reimplementations of mmseg's rules."""

import cv2
import numpy as np
import pytest

from semseg_jax.data import transforms as T


def _image(rng, h=37, w=53):
  return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------- resizing

@pytest.mark.parametrize('hw, scale, expected', [
    ((512, 683), (2048, 512), (512, 683)),     # already fits: factor 1
    ((375, 500), (2048, 512), (512, 683)),     # landscape, short edge binds: 500 * 512/375 = 682.67
    ((500, 375), (2048, 512), (683, 512)),     # portrait, short edge binds
    ((375, 500), (512, 2048), (512, 683)),     # order of scale does not matter
    ((100, 1000), (2048, 512), (205, 2048)),   # long edge binds: factor 2.048, 204.8 -> 205
    ((1000, 100), (2048, 512), (2048, 205)),   # portrait, long edge binds
    ((2048, 4096), (2048, 512), (512, 1024)),  # downscale, short edge binds (0.25 < 0.5)
    ((1024, 2048), (2048, 1024), (1024, 2048)),
    ((333, 500), (2048, 512), (512, 769)),     # 500 * 512/333 = 768.77
    ((4, 5), (10, 2), (2, 3)),                 # 5 * 0.5 = 2.5 rounds half up to 3
    ((7, 7), (4096, 1), (1, 1)),
])
def test_rescale_size_table(hw, scale, expected):
  assert T.rescale_size(hw, scale) == expected


def test_resize_label_is_nearest_and_shapes():
  rng = np.random.default_rng(0)
  image = _image(rng)
  label = rng.choice(np.array([0, 3, 7, 255], np.uint8), size=(37, 53))
  for out_hw in [(80, 31), (20, 100), (37, 53)]:
    out_img, out_lbl = T.resize(image, label, out_hw)
    assert out_img.shape == out_hw + (3,) and out_img.dtype == np.uint8
    assert out_lbl.shape == out_hw and out_lbl.dtype == np.uint8
    assert set(np.unique(out_lbl)) <= {0, 3, 7, 255}
  # Integer upscaling with nearest repeats each label pixel.
  _, up = T.resize(image, label, (74, 106))
  np.testing.assert_array_equal(up, label.repeat(2, 0).repeat(2, 1))
  # int32 / int64 labels keep their dtype and values.
  for dtype in (np.int32, np.int64):
    _, out = T.resize(image, label.astype(dtype), (50, 60))
    assert out.dtype == dtype and set(np.unique(out)) <= {0, 3, 7, 255}
  img_only, none = T.resize(image, None, (10, 12))
  assert none is None and img_only.shape == (10, 12, 3)
  # Image is cv2 bilinear.
  np.testing.assert_array_equal(T.resize(image, None, (80, 31))[0],
                                cv2.resize(image, (31, 80), interpolation=cv2.INTER_LINEAR))


def test_resize_keep_ratio_uses_rescale_size():
  rng = np.random.default_rng(1)
  image, label = _image(rng, 30, 40), rng.integers(0, 5, size=(30, 40)).astype(np.uint8)
  out_img, out_lbl = T.resize_keep_ratio(image, label, (2048, 512))
  assert out_img.shape[:2] == out_lbl.shape == T.rescale_size((30, 40), (2048, 512)) == (512, 683)


@pytest.mark.parametrize('seed', range(5))
def test_random_resize_replay(seed):
  image = _image(np.random.default_rng(100 + seed), 30, 45)
  label = np.zeros((30, 45), np.uint8)
  out_img, out_lbl = T.random_resize(image, label, np.random.default_rng(seed), (200, 50),
                                     (0.5, 2.0))
  ratio = np.random.default_rng(seed).random() * 1.5 + 0.5
  target = (int(200 * ratio), int(50 * ratio))  # truncated, as mmcv
  assert out_img.shape[:2] == out_lbl.shape == T.rescale_size((30, 45), target)


# ----------------------------------------------------------------------------- cropping

def _accept(crop, cat_max_ratio, ignore_index):
  counts = {}
  for v in crop.ravel().tolist():
    if v != ignore_index:
      counts[v] = counts.get(v, 0) + 1
  return len(counts) > 1 and max(counts.values()) / sum(counts.values()) < cat_max_ratio


def _reference_crop_box(shape, crop_hw, rng, cat_max_ratio, label, ignore_index):
  """Candidate boxes in mmseg's order; the first accepted of 10 checks, else the 11th."""
  def draw():
    top = rng.integers(0, max(shape[0] - crop_hw[0], 0) + 1)
    left = rng.integers(0, max(shape[1] - crop_hw[1], 0) + 1)
    return int(top), int(left)

  box = draw()
  if cat_max_ratio >= 1.0:
    return box, 0
  for checks in range(10):
    crop = label[box[0]:box[0] + crop_hw[0], box[1]:box[1] + crop_hw[1]]
    if _accept(crop, cat_max_ratio, ignore_index):
      return box, checks
    box = draw()
  return box, 10


@pytest.mark.parametrize('seed', range(30))
def test_random_crop_matches_bruteforce(seed):
  rng = np.random.default_rng(seed)
  h, w = 40, 50
  # Blocky labels dominated by class 0, with ignore pixels, so some candidates are rejected.
  coarse = rng.choice([0, 0, 0, 0, 0, 1, 2, 255], size=(8, 10))
  label = np.kron(coarse, np.ones((5, 5), np.int64)).astype(np.uint8)
  image = _image(rng, h, w)
  crop_hw, ratio = (16, 20), 0.75
  out_img, out_lbl = T.random_crop(image, label, np.random.default_rng(seed + 1000), crop_hw,
                                   ratio, 255)
  ref_rng = np.random.default_rng(seed + 1000)
  (top, left), _ = _reference_crop_box((h, w), crop_hw, ref_rng, ratio, label, 255)
  np.testing.assert_array_equal(out_img, image[top:top + 16, left:left + 20])
  np.testing.assert_array_equal(out_lbl, label[top:top + 16, left:left + 20])


def test_random_crop_exercises_retries():
  # Over the seeds above some crops are accepted at the first check, some after retries.
  checks = []
  for seed in range(30):
    rng = np.random.default_rng(seed)
    coarse = rng.choice([0, 0, 0, 0, 0, 1, 2, 255], size=(8, 10))
    label = np.kron(coarse, np.ones((5, 5), np.int64)).astype(np.uint8)
    _image(rng, 40, 50)
    checks.append(_reference_crop_box((40, 50), (16, 20), np.random.default_rng(seed + 1000),
                                      0.75, label, 255)[1])
  assert 0 in checks and any(0 < c < 10 for c in checks)


@pytest.mark.parametrize('label_kind', ['single_class', 'all_ignore', 'one_class_plus_ignore'])
def test_random_crop_fallback_is_eleventh_candidate(label_kind):
  rng = np.random.default_rng(5)
  image = _image(rng, 30, 40)
  label = np.zeros((30, 40), np.uint8)
  if label_kind == 'all_ignore':
    label[:] = 255
  elif label_kind == 'one_class_plus_ignore':
    label[::2] = 255
  out_img, out_lbl = T.random_crop(image, label, gen := np.random.default_rng(9), (10, 12), 0.9)
  ref = np.random.default_rng(9)
  boxes = [(int(ref.integers(0, 21)), int(ref.integers(0, 29))) for _ in range(11)]
  top, left = boxes[-1]
  np.testing.assert_array_equal(out_img, image[top:top + 10, left:left + 12])
  np.testing.assert_array_equal(out_lbl, label[top:top + 10, left:left + 12])
  assert gen.integers(1 << 30) == ref.integers(1 << 30)  # exactly 22 draws consumed


def test_random_crop_ratio_is_strict():
  # Two classes, 3:1 in every window (rows alternate 0,0,0,1): max share 0.75 is not < 0.75.
  label = np.zeros((8, 8), np.uint8)
  label[3::4] = 1
  image = np.zeros((8, 8, 3), np.uint8)
  for ratio, candidates in [(0.75, 11), (0.76, 1)]:  # all 10 checks fail / first accepted
    rng, ref = np.random.default_rng(0), np.random.default_rng(0)
    T.random_crop(image, label, rng, (4, 8), cat_max_ratio=ratio)
    for _ in range(candidates):
      ref.integers(0, 5), ref.integers(0, 1)
    assert rng.integers(1 << 30) == ref.integers(1 << 30)


def test_random_crop_without_ratio_and_small_image():
  rng = np.random.default_rng(3)
  image, label = _image(rng, 20, 30), rng.integers(0, 3, size=(20, 30)).astype(np.uint8)
  out_img, out_lbl = T.random_crop(image, label, np.random.default_rng(4), (32, 16))
  ref = np.random.default_rng(4)
  top, left = int(ref.integers(0, 1)), int(ref.integers(0, 15))
  assert top == 0 and out_img.shape == (20, 16, 3)
  np.testing.assert_array_equal(out_lbl, label[:, left:left + 16])
  img_only, none = T.random_crop(image, None, np.random.default_rng(4), (8, 8))
  assert none is None and img_only.shape == (8, 8, 3)


# ----------------------------------------------------------------------------- flipping

@pytest.mark.parametrize('seed', range(6))
def test_random_flip_replay(seed):
  rng = np.random.default_rng(seed)
  image, label = _image(rng), rng.integers(0, 4, size=(37, 53)).astype(np.uint8)
  out_img, out_lbl = T.random_flip(image, label, np.random.default_rng(seed), 0.5)
  flip = np.random.default_rng(seed).random() < 0.5
  np.testing.assert_array_equal(out_img, image[:, ::-1] if flip else image)
  np.testing.assert_array_equal(out_lbl, label[:, ::-1] if flip else label)
  assert np.array_equal(T.random_flip(image, label, rng, 1.0)[1], label[:, ::-1])
  assert np.array_equal(T.random_flip(image, label, rng, 0.0)[1], label)


# ----------------------------------------------------------------------------- photometric

def _np_rgb2hsv(rgb):
  """OpenCV's 8-bit RGB->HSV (H in 0..179), with its 12-bit fixed-point divisions."""
  r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
  v = np.maximum(np.maximum(r, g), b)
  diff = v - np.minimum(np.minimum(r, g), b)
  sdiv = np.where(v > 0, np.rint(4096 * 255 / np.maximum(v, 1)), 0).astype(np.int64)
  s = (diff * sdiv + 2048) >> 12
  h = np.where(v == r, g - b, np.where(v == g, b - r + 2 * diff, r - g + 4 * diff))
  hdiv = np.where(diff > 0, np.rint(4096 * 180 / (6.0 * np.maximum(diff, 1))), 0)
  h = (h * hdiv.astype(np.int64) + 2048) >> 12
  h = np.where(h < 0, h + 180, h)
  return np.stack([h, s, v], -1).astype(np.uint8)


def _np_hsv2rgb(hsv):
  """HSV (H in 0..179) -> RGB by sectors in float32, rounded to uint8.

  OpenCV rounds like this in its scalar loop but truncates in its vectorised one (rows are
  processed in blocks of 4 SIMD widths, the remainder by the scalar loop), and may fuse
  multiply-adds; so on rows narrower than 16 pixels cv2 agrees with this up to rare one-level
  differences, and on wide rows to within one grey level.
  """
  f32 = np.float32
  h = hsv[..., 0].astype(f32) * f32(6.0 / 180.0)
  s = hsv[..., 1].astype(f32) * f32(1 / 255)
  v = hsv[..., 2].astype(f32) * f32(1 / 255)
  sector = np.floor(h).astype(np.int64) % 6
  frac = h - np.floor(h)
  p, q, t = v * (1 - s), v * (1 - s * frac), v * (1 - s * (1 - frac))
  # (r, g, b) for each sector, picking from (v, p, q, t).
  table = np.stack([v, p, q, t], -1)
  order = np.array([[0, 3, 1], [2, 0, 1], [1, 0, 3], [1, 2, 0], [3, 1, 0], [0, 1, 2]])
  rgb = np.take_along_axis(table, order[sector], -1)
  return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)


_CV2_HSV = (lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2HSV),
            lambda x: cv2.cvtColor(x, cv2.COLOR_HSV2RGB))
_NP_HSV = (_np_rgb2hsv, _np_hsv2rgb)


def _reference_photometric(image, rng, conversions, log=None):
  """mmseg PhotoMetricDistortion, written out step by step."""
  to_hsv, to_rgb = conversions

  def affine(x, alpha=1.0, beta=0.0):
    y = x.astype(np.float32) * np.float32(alpha) + np.float32(beta)
    return np.floor(np.clip(y, 0, 255)).astype(np.uint8)

  def contrast(x):
    if rng.integers(0, 2) == 1:
      log is not None and log.append('contrast')
      return affine(x, alpha=rng.uniform(0.5, 1.5))
    return x

  x = image.copy()
  if rng.integers(0, 2) == 1:
    log is not None and log.append('brightness')
    x = affine(x, beta=rng.uniform(-32, 32))
  contrast_first = rng.integers(0, 2) == 1
  if contrast_first:
    x = contrast(x)
  if rng.integers(0, 2) == 1:
    log is not None and log.append('saturation')
    hsv = to_hsv(x)
    hsv[..., 1] = affine(hsv[..., 1], alpha=rng.uniform(0.5, 1.5))
    x = to_rgb(hsv)
  if rng.integers(0, 2) == 1:
    log is not None and log.append('hue')
    hsv = to_hsv(x)
    shift = rng.integers(-18, 18)  # high exclusive, as numpy's randint in mmseg
    hsv[..., 0] = np.mod(hsv[..., 0].astype(np.int64) + shift, 180).astype(np.uint8)
    x = to_rgb(hsv)
  if not contrast_first:
    x = contrast(x)
  return x


def test_numpy_hsv_matches_cv2():
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 256, size=(64, 256, 3), dtype=np.uint8)
  rgb[0, :8] = [[0, 0, 0], [255, 255, 255], [9, 9, 9], [255, 0, 0], [0, 255, 0], [0, 0, 255],
                [255, 0, 1], [1, 0, 255]]
  np.testing.assert_array_equal(_np_rgb2hsv(rgb), cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV))
  hsv = np.stack([rng.integers(0, 180, (64, 256)), rng.integers(0, 256, (64, 256)),
                  rng.integers(0, 256, (64, 256))], -1).astype(np.uint8)
  diff = np.abs(_np_hsv2rgb(hsv).astype(int) - cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB))
  assert diff.max() <= 1
  narrow = np.ascontiguousarray(hsv[:, :15])
  diff = np.abs(_np_hsv2rgb(narrow).astype(int) - cv2.cvtColor(narrow, cv2.COLOR_HSV2RGB))
  assert diff.max() <= 1 and (diff > 0).mean() < 0.005
  # RGB<->HSV on RGB equals mmseg's BGR<->HSV on BGR.
  np.testing.assert_array_equal(cv2.cvtColor(rgb[..., ::-1].copy(), cv2.COLOR_BGR2HSV),
                                cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV))
  np.testing.assert_array_equal(cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[..., ::-1],
                                cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB))


@pytest.mark.parametrize('seed', range(40))
def test_photometric_matches_reference(seed):
  # Wide image: the step sequence with cv2's own colour conversions gives identical output.
  image = _image(np.random.default_rng(seed + 500), 21, 130)
  before = image.copy()
  got = T.photometric_distortion(image, np.random.default_rng(seed))
  np.testing.assert_array_equal(image, before)
  assert got.dtype == np.uint8 and got.shape == image.shape
  np.testing.assert_array_equal(
      got, _reference_photometric(image, np.random.default_rng(seed), _CV2_HSV))
  # Narrow image (cv2's rounding path), all-NumPy reference: identical without HSV steps;
  # with them, rare one-level differences that a later HSV / contrast step may grow a little.
  image = _image(np.random.default_rng(seed + 900), 64, 15)
  got = T.photometric_distortion(image, np.random.default_rng(seed))
  steps = []
  approx = _reference_photometric(image, np.random.default_rng(seed), _NP_HSV, steps)
  diff = np.abs(got.astype(int) - approx)
  if not {'saturation', 'hue'} & set(steps):
    assert diff.max() == 0
  elif steps[-1] != 'contrast' and not {'saturation', 'hue'} <= set(steps):
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01
  else:
    assert diff.max() <= 3 and (diff > 0).mean() < 0.01


def test_photometric_covers_all_steps():
  seen = set()
  for seed in range(40):
    steps = []
    _reference_photometric(np.zeros((2, 2, 3), np.uint8), np.random.default_rng(seed),
                           _CV2_HSV, steps)
    seen.add(tuple(steps))
  flat = {s for steps in seen for s in steps}
  assert flat == {'brightness', 'contrast', 'saturation', 'hue'} and len(seen) > 8


def test_photometric_truncates_and_clips():
  # Brightness-only path: a generator whose first draws apply brightness and nothing else.
  image = np.array([[[0, 100, 250]]], np.uint8)
  for seed in range(200):
    rng = np.random.default_rng(seed)
    if rng.integers(0, 2) != 1:
      continue
    beta = rng.uniform(-32, 32)
    rng.integers(0, 2)  # mode
    if any(rng.integers(0, 2) for _ in range(3)):  # contrast, saturation, hue coins
      continue
    got = T.photometric_distortion(image, np.random.default_rng(seed))
    want = [int(np.clip(np.float32(c) + np.float32(beta), 0, 255)) for c in (0, 100, 250)]
    assert got[0, 0].tolist() == want, (seed, beta)
    return
  pytest.fail('no seed with brightness only')


# ----------------------------------------------------------------------------- determinism

def _random_calls():
  rng = np.random.default_rng(7)
  image = _image(rng, 60, 80)
  coarse = rng.integers(0, 4, size=(6, 8))
  label = np.kron(coarse, np.ones((10, 10), np.int64)).astype(np.uint8)
  return {
      'random_resize': lambda g: T.random_resize(image, label, g, (200, 60)),
      'random_crop': lambda g: T.random_crop(image, label, g, (24, 24), 0.75),
      'random_flip': lambda g: T.random_flip(image, label, g),
      'photometric_distortion': lambda g: (T.photometric_distortion(image, g),),
  }


@pytest.mark.parametrize('name', list(_random_calls()))
def test_same_seed_same_output_different_seeds_differ(name):
  fn = _random_calls()[name]

  def run(seed):
    return [x for x in fn(np.random.default_rng(seed)) if x is not None]

  for seed in range(3):
    for a, b in zip(run(seed), run(seed)):
      np.testing.assert_array_equal(a, b)
  outputs = [run(seed) for seed in range(8)]
  distinct = {tuple(x.shape + (x.tobytes(),) for x in out) for out in outputs}
  assert len(distinct) > 1


def test_inputs_not_modified_and_outputs_are_new():
  rng = np.random.default_rng(11)
  image, label = _image(rng), rng.integers(0, 4, size=(37, 53)).astype(np.uint8)
  img0, lbl0 = image.copy(), label.copy()
  outs = [T.random_resize(image, label, rng, (100, 40)), T.random_crop(image, label, rng, (50, 60)),
          T.random_flip(image, label, rng, 0.0), T.random_flip(image, label, rng, 1.0),
          T.pad_to(image, label, (10, 10)), T.resize(image, label, (37, 53))]
  for out_img, out_lbl in outs:
    assert not np.shares_memory(out_img, image) and not np.shares_memory(out_lbl, label)
  assert not np.shares_memory(T.photometric_distortion(image, rng), image)
  np.testing.assert_array_equal(image, img0)
  np.testing.assert_array_equal(label, lbl0)


# ----------------------------------------------------------------------------- normalise, pad

def test_normalize_formula():
  image = _image(np.random.default_rng(2))
  mean, std = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
  out = T.normalize(image, mean, std)
  assert out.dtype == np.float32
  want = (image.astype(np.float64) - np.array(mean)) / np.array(std)
  np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(T.normalize(image), want, rtol=1e-5, atol=1e-5)


def test_pad_to():
  rng = np.random.default_rng(4)
  image = T.normalize(_image(rng, 10, 7))
  label = rng.integers(0, 3, size=(10, 7)).astype(np.uint8)
  out_img, out_lbl = T.pad_to(image, label, (16, 12), ignore_index=255, image_value=-1.5)
  assert out_img.shape == (16, 12, 3) and out_img.dtype == np.float32
  assert out_lbl.shape == (16, 12) and out_lbl.dtype == np.uint8
  np.testing.assert_array_equal(out_img[:10, :7], image)
  np.testing.assert_array_equal(out_lbl[:10, :7], label)
  assert (out_img[10:] == -1.5).all() and (out_img[:, 7:] == -1.5).all()
  assert (out_lbl[10:] == 255).all() and (out_lbl[:, 7:] == 255).all()
  # Only the short side grows; default image value 0.
  out_img, out_lbl = T.pad_to(image, label.astype(np.int32), (4, 9))
  assert out_img.shape == (10, 9, 3) and out_lbl.shape == (10, 9) and out_lbl.dtype == np.int32
  assert (out_img[:, 7:] == 0).all() and (out_lbl[:, 7:] == 255).all()
  # Already large enough: unchanged copy.
  same_img, same_lbl = T.pad_to(image, label, (5, 5))
  np.testing.assert_array_equal(same_img, image)
  np.testing.assert_array_equal(same_lbl, label)
  assert T.pad_to(image, None, (12, 12))[1] is None
