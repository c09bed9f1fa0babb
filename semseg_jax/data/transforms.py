"""Per-example augmentation and preprocessing, following mmsegmentation 1.x and mmcv 2.x.

Pure NumPy/cv2 functions on one example: an RGB uint8 image [H, W, 3] and a label map [H, W]
(or None) whose `ignore_index` pixels count nowhere. They reproduce mmseg's `RandomResize` /
`Resize` (keep_ratio, via mmcv's `rescale_size` / `imrescale`), `RandomCrop` (with
`cat_max_ratio`), `RandomFlip`, `PhotoMetricDistortion` and the normalise-then-pad of
`SegDataPreProcessor`, including their rounding and clipping. Random functions draw everything
from the `np.random.Generator` they are given, in the order mmseg draws from `np.random`, so an
example is regenerated from its generator's seed alone. Inputs are never modified.
"""

from typing import Optional

import cv2
import numpy as np

Array = np.ndarray
OptLabel = Optional[np.ndarray]

# Dtypes cv2.resize handles; other label dtypes go through int32.
_CV2_DTYPES = (np.uint8, np.int8, np.uint16, np.int16, np.int32, np.float32, np.float64)


def rescale_size(hw: tuple[int, int], scale: tuple[int, int]) -> tuple[int, int]:
  """mmcv's keep-ratio size: the largest size whose long edge is <= max(scale) and short edge
  <= min(scale) (either limit may bind), each edge rounded as int(x * factor + 0.5).
  Returns (new_h, new_w)."""
  h, w = int(hw[0]), int(hw[1])
  factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
  return int(h * float(factor) + 0.5), int(w * float(factor) + 0.5)


def _resize_label(label: Array, out_hw: tuple[int, int]) -> Array:
  size = (int(out_hw[1]), int(out_hw[0]))
  if label.dtype.type in _CV2_DTYPES:
    return cv2.resize(np.ascontiguousarray(label), size, interpolation=cv2.INTER_NEAREST)
  out = cv2.resize(label.astype(np.int32), size, interpolation=cv2.INTER_NEAREST)
  return out.astype(label.dtype)


def resize(image: Array, label: OptLabel, out_hw: tuple[int, int]) -> tuple[Array, OptLabel]:
  """Resize to exactly out_hw: image bilinear (cv2.INTER_LINEAR, mmcv's default), label nearest."""
  size = (int(out_hw[1]), int(out_hw[0]))
  image = cv2.resize(np.ascontiguousarray(image), size, interpolation=cv2.INTER_LINEAR)
  return image, (None if label is None else _resize_label(label, out_hw))


def resize_keep_ratio(image: Array, label: OptLabel,
                      scale: tuple[int, int]) -> tuple[Array, OptLabel]:
  """mmcv `imrescale` of image (bilinear) and label (nearest) to fit within `scale`."""
  return resize(image, label, rescale_size(image.shape[:2], scale))


def random_resize(image: Array, label: OptLabel, rng: np.random.Generator,
                  scale: tuple[int, int] = (2048, 512),
                  ratio_range: tuple[float, float] = (0.5, 2.0)) -> tuple[Array, OptLabel]:
  """mmseg `RandomResize(scale, ratio_range, keep_ratio=True)`: ratio ~ U[lo, hi), the target
  scale is (int(s0 * ratio), int(s1 * ratio)) (truncated), then a keep-ratio rescale."""
  lo, hi = ratio_range
  ratio = rng.random() * (hi - lo) + lo
  target = (int(scale[0] * ratio), int(scale[1] * ratio))
  return resize_keep_ratio(image, label, target)


def _crop_box(shape: tuple[int, ...], crop_hw: tuple[int, int],
              rng: np.random.Generator) -> tuple[int, int, int, int]:
  top = int(rng.integers(0, max(shape[0] - crop_hw[0], 0) + 1))
  left = int(rng.integers(0, max(shape[1] - crop_hw[1], 0) + 1))
  return top, top + crop_hw[0], left, left + crop_hw[1]


def crop_acceptable(label_crop: Array, cat_max_ratio: float, ignore_index: int = 255) -> bool:
  """mmseg's test for a crop: more than one non-ignore class present, and the most frequent
  one covers strictly less than cat_max_ratio of the non-ignore pixels."""
  if label_crop.dtype == np.uint8:  # A histogram: much faster than sorting the crop.
    counts = np.bincount(label_crop.ravel(), minlength=256)
    counts[ignore_index] = 0
    counts = counts[counts > 0]
  else:
    values, counts = np.unique(label_crop, return_counts=True)
    counts = counts[values != ignore_index]
  return len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio


def random_crop(image: Array, label: OptLabel, rng: np.random.Generator,
                crop_hw: tuple[int, int], cat_max_ratio: float = 1.0,
                ignore_index: int = 255) -> tuple[Array, OptLabel]:
  """mmseg `RandomCrop`: top then left offset uniform in [0, max(H - ch, 0)] etc.

  With cat_max_ratio < 1 a candidate is checked with `crop_acceptable` up to 10 times, a new
  one drawn after each rejection; as in mmseg, after 10 rejections the 11th candidate is used
  unchecked. The crop is smaller than crop_hw where the image is (pad later).
  """
  crop_hw = (int(crop_hw[0]), int(crop_hw[1]))
  box = _crop_box(image.shape, crop_hw, rng)
  if cat_max_ratio < 1.0:
    if label is None:
      raise ValueError('cat_max_ratio < 1 needs a label.')
    for _ in range(10):
      y0, y1, x0, x1 = box
      if crop_acceptable(label[y0:y1, x0:x1], cat_max_ratio, ignore_index):
        break
      box = _crop_box(image.shape, crop_hw, rng)
  y0, y1, x0, x1 = box
  return image[y0:y1, x0:x1].copy(), (None if label is None else label[y0:y1, x0:x1].copy())


def cv2_nearest_indices(src: int, dst: int, start: int, count: int) -> np.ndarray:
  """Source indices of output pixels start..start+count-1 when a length-src axis is resized to
  dst by cv2.INTER_NEAREST (floor(x * (1 / (dst / src))) in float64, as OpenCV computes it)."""
  inverse_scale = 1.0 / (dst / src)
  x = np.arange(start, start + count, dtype=np.float64)
  return np.minimum(np.floor(x * inverse_scale).astype(np.int64), src - 1)


def resized_window(image: Array, out_hw: tuple[int, int], box: tuple[int, int, int, int]) -> Array:
  """Rows y0:y1, columns x0:x1 of `image` bilinearly resized to out_hw, computing only those
  pixels: cv2.warpAffine with cv2.resize's pixel-centre mapping and edge clamping. Equal to
  resize-then-slice up to OpenCV's 1/32-pixel position quantisation (at most one grey level on
  natural images)."""
  y0, y1, x0, x1 = box
  h, w = image.shape[:2]
  if (h, w) == tuple(out_hw):
    return image[y0:y1, x0:x1].copy()
  sy, sx = h / out_hw[0], w / out_hw[1]
  matrix = np.array([[sx, 0.0, (x0 + 0.5) * sx - 0.5], [0.0, sy, (y0 + 0.5) * sy - 0.5]])
  return cv2.warpAffine(np.ascontiguousarray(image), matrix, (x1 - x0, y1 - y0),
                        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                        borderMode=cv2.BORDER_REPLICATE)


def random_resize_crop(image: Array, label: Array, rng: np.random.Generator,
                       scale: tuple[int, int], ratio_range: tuple[float, float],
                       crop_hw: tuple[int, int], cat_max_ratio: float = 1.0,
                       ignore_index: int = 255) -> tuple[Array, Array]:
  """`random_resize` then `random_crop` with the same random draws, resampling only the
  pixels the crop keeps: the label by cv2.INTER_NEAREST's exact index mapping, the image by
  `resized_window`. With an empty `scale` there is no resize."""
  h, w = image.shape[:2]
  out_h, out_w = h, w
  if scale:
    lo, hi = ratio_range
    ratio = rng.random() * (hi - lo) + lo
    out_h, out_w = rescale_size((h, w), (int(scale[0] * ratio), int(scale[1] * ratio)))
  crop_hw = (int(crop_hw[0]), int(crop_hw[1]))

  def label_window(box):
    y0, y1, x0, x1 = box[0], min(box[1], out_h), box[2], min(box[3], out_w)
    if (out_h, out_w) == (h, w):
      return label[y0:y1, x0:x1]
    rows = cv2_nearest_indices(h, out_h, y0, y1 - y0)
    cols = cv2_nearest_indices(w, out_w, x0, x1 - x0)
    return label[rows[:, None], cols[None, :]]

  box = _crop_box((out_h, out_w), crop_hw, rng)
  if cat_max_ratio < 1.0:
    for _ in range(10):
      if crop_acceptable(label_window(box), cat_max_ratio, ignore_index):
        break
      box = _crop_box((out_h, out_w), crop_hw, rng)
  box = (box[0], min(box[1], out_h), box[2], min(box[3], out_w))
  return resized_window(image, (out_h, out_w), box), label_window(box).copy()


def random_flip(image: Array, label: OptLabel, rng: np.random.Generator,
                prob: float = 0.5) -> tuple[Array, OptLabel]:
  """Horizontal flip with probability `prob` (one uniform draw, always consumed)."""
  if rng.random() < prob:
    return (image[:, ::-1].copy(), None if label is None else label[:, ::-1].copy())
  return image.copy(), (None if label is None else label.copy())


def _affine_uint8(x: Array, alpha: float = 1.0, beta: float = 0.0) -> Array:
  # mmseg's `convert`: float32 x * alpha + beta, clip to [0, 255], truncate to uint8.
  y = x.astype(np.float32) * np.float32(alpha) + np.float32(beta)
  return np.clip(y, 0, 255).astype(np.uint8)


def photometric_distortion(image: Array, rng: np.random.Generator, brightness_delta: int = 32,
                           contrast_range: tuple[float, float] = (0.5, 1.5),
                           saturation_range: tuple[float, float] = (0.5, 1.5),
                           hue_delta: int = 18) -> Array:
  """mmseg `PhotoMetricDistortion` on a uint8 RGB image; returns a new uint8 image.

  Draw order (each step's coin is integers(2), applied when 1): brightness coin [+ beta ~
  U(-d, d)]; mode = integers(2); if mode == 1 contrast coin [+ alpha ~ U(range)]; saturation
  coin [+ alpha]; hue coin [+ delta = integers(-hue_delta, hue_delta), high exclusive as in
  mmseg]; if mode == 0 contrast coin [+ alpha]. Brightness/contrast/saturation compute in
  float32, clip to [0, 255] and truncate (not round) to uint8. Saturation scales S of cv2's
  8-bit HSV; hue adds delta to H (0..179) modulo 180. cv2's RGB<->HSV on RGB equals mmseg's
  BGR<->HSV on BGR.
  """
  img = np.array(image, dtype=np.uint8, copy=True)

  def contrast(x: Array) -> Array:
    if rng.integers(2):
      return _affine_uint8(x, alpha=rng.uniform(*contrast_range))
    return x

  if rng.integers(2):
    img = _affine_uint8(img, beta=rng.uniform(-brightness_delta, brightness_delta))
  mode = rng.integers(2)
  if mode == 1:
    img = contrast(img)
  if rng.integers(2):
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    hsv[..., 1] = _affine_uint8(hsv[..., 1], alpha=rng.uniform(*saturation_range))
    img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
  if rng.integers(2):
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    delta = int(rng.integers(-hue_delta, hue_delta))
    hsv[..., 0] = (hsv[..., 0].astype(np.int64) + delta) % 180
    img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
  if mode == 0:
    img = contrast(img)
  return img


def normalize(image: Array, mean=(123.675, 116.28, 103.53),
              std=(58.395, 57.12, 57.375), channel_order: str = 'rgb') -> Array:
  """(image - mean) / std per channel, in float32 (as mmseg's SegDataPreProcessor). `image` is
  RGB; channel_order='bgr' reverses it first, and mean/std are then in BGR order."""
  if channel_order == 'bgr':
    image = image[..., ::-1]
  mean = np.asarray(mean, dtype=np.float32)
  std = np.asarray(std, dtype=np.float32)
  return (image.astype(np.float32) - mean) / std


def pad_to(image: Array, label: OptLabel, hw: tuple[int, int], ignore_index: int = 255,
           image_value: float = 0.0) -> tuple[Array, OptLabel]:
  """Pad bottom/right to at least hw: image with image_value, label with ignore_index.

  mmseg pads after normalisation with 0, so image_value=0.0 is the mean colour there."""
  h, w = image.shape[:2]
  out_h, out_w = max(h, int(hw[0])), max(w, int(hw[1]))
  padded = np.full((out_h, out_w) + image.shape[2:], image_value, dtype=image.dtype)
  padded[:h, :w] = image
  if label is None:
    return padded, None
  padded_label = np.full((out_h, out_w) + label.shape[2:], ignore_index, dtype=label.dtype)
  padded_label[:label.shape[0], :label.shape[1]] = label
  return padded, padded_label
