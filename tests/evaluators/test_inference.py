"""Inference at test time: sliding windows against a direct loop over mmseg's windows, the
identities the modes must satisfy (slide = whole when a window covers the image, flip TTA of a
flip-symmetric model = plain, one scale = whole), the test-time sizes, and the crop-and-resize
to the label against a brute-force NumPy reference of PyTorch's bilinear interpolation."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import default
from semseg_jax import losses
from semseg_jax import main
from semseg_jax import models
from semseg_jax import sharding
from semseg_jax.data import pipeline
from semseg_jax.evaluators import inference
from semseg_jax.tools import model_benchmark

NUM_CLASSES = 3


class PixelModel(nn.Module):
  """Per-pixel logits (a 1x1 conv): no context, so any window placement gives the same."""

  @nn.compact
  def __call__(self, images, train=False):
    return {'logits': nn.Conv(NUM_CLASSES, (1, 1))(images)}


class ContextModel(nn.Module):
  """3x3 convs with stride 2 then 1/2-resolution logits: windows see different context."""

  @nn.compact
  def __call__(self, images, train=False):
    x = nn.relu(nn.Conv(8, (3, 3), strides=2)(images))
    return {'logits': nn.Conv(NUM_CLASSES, (3, 3))(x)}


class MirrorModel(nn.Module):
  """3x3 convs whose kernels are mirror-symmetric left-right: flip-equivariant."""

  @nn.compact
  def __call__(self, images, train=False):
    x = images
    for features in (8, NUM_CLASSES):
      kernel = self.param(f'kernel_{features}', nn.initializers.lecun_normal(),
                          (3, 3, x.shape[-1], features))
      kernel = (kernel + kernel[:, ::-1]) / 2
      x = jax.lax.conv_general_dilated(x, kernel, (1, 1), 'SAME',
                                       dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
      x = nn.relu(x) if features == 8 else x
    return {'logits': x}


class GlobalContextModel(nn.Module):
  """Half-resolution logits that also depend on the mean of the whole input (a squeeze-excite
  gate and bias): every output pixel sees every input pixel, padding included."""

  @nn.compact
  def __call__(self, images, train=False):
    x = nn.relu(nn.Conv(8, (3, 3), strides=2)(images))
    context = nn.Dense(8)(jnp.mean(x, axis=(1, 2), keepdims=True))
    return {'logits': nn.Conv(NUM_CLASSES, (1, 1))(x * jax.nn.sigmoid(context) + context)}


def _variables(model, hw=(16, 16)):
  """Initialised under jit: op by op, an init dispatches slowly."""
  return jax.jit(lambda x: model.init(jax.random.key(0), x))(jnp.zeros((1, *hw, 3)))


def _eval_config(**overrides) -> ml_collections.ConfigDict:
  config = default.get_config().eval
  config.unlock()
  for key, value in overrides.items():
    config[key] = value
  return config


def _batch(image_hws, canvas, label_hw, seed=0):
  rng = np.random.default_rng(seed)
  images = np.zeros((len(image_hws), *canvas, 3), np.float32)
  for i, (h, w) in enumerate(image_hws):
    images[i, :h, :w] = rng.normal(size=(h, w, 3))
  n = len(image_hws)
  return {'images': [jnp.asarray(images)], 'image_hws': [jnp.asarray(image_hws, jnp.int32)],
          'label': jnp.zeros((n, *label_hw), jnp.int32),
          'label_hw': jnp.asarray([label_hw] * n, jnp.int32)}


def _slide_reference(model, variables, image, crop, stride):
  """mmseg's slide_inference on one unpadded image [h, w, 3], window by window."""
  h, w = image.shape[:2]
  rows = max(h - crop[0] + stride[0] - 1, 0) // stride[0] + 1
  cols = max(w - crop[1] + stride[1] - 1, 0) // stride[1] + 1
  sums = np.zeros((h, w, NUM_CLASSES))
  counts = np.zeros((h, w, 1))
  for a in range(rows):
    for b in range(cols):
      y2, x2 = min(a * stride[0] + crop[0], h), min(b * stride[1] + crop[1], w)
      y1, x1 = max(y2 - crop[0], 0), max(x2 - crop[1], 0)
      window = jnp.asarray(image[None, y1:y2, x1:x2])
      logits = model.apply(variables, window)['logits']
      sums[y1:y2, x1:x2] += np.asarray(losses.resize_logits(logits, (y2 - y1, x2 - x1)))[0]
      counts[y1:y2, x1:x2] += 1
  assert counts.min() >= 1
  return sums / counts


@pytest.mark.parametrize('crop,stride,per_step', [((8, 8), (5, 6), 1), ((8, 12), (4, 4), 3),
                                                  ((16, 16), (16, 16), 4), ((6, 8), (3, 5), 64)])
def test_slide_matches_a_window_by_window_reference(crop, stride, per_step):
  model = ContextModel()
  variables = _variables(model)
  image_hws = [(20, 24), (17, 22), (16, 18)]  # One per canvas row: different window grids.
  batch = _batch(image_hws, (20, 24), (20, 24))
  got = jax.jit(lambda v, i, hw: inference.infer_slide(model, v, i, hw, crop, stride, per_step))(
      variables, batch['images'][0], batch['image_hws'][0])
  for i, (h, w) in enumerate(image_hws):
    expected = _slide_reference(model, variables, np.asarray(batch['images'][0][i, :h, :w]),
                                crop, stride)
    np.testing.assert_allclose(np.asarray(got)[i, :h, :w], expected, atol=1e-5)


def test_slide_of_a_per_pixel_model_equals_whole():
  model = PixelModel()
  variables = _variables(model)
  batch = _batch([(20, 24), (13, 9)], (20, 24), (26, 30))
  whole = inference.predict_scores(model, variables, batch, _eval_config())
  slide = inference.predict_scores(model, variables, batch, _eval_config(
      mode='slide', crop_size=(7, 9), stride=(4, 5), windows_per_step=2))
  np.testing.assert_allclose(slide, whole, atol=1e-5)


def test_slide_equals_whole_when_one_window_covers_the_image():
  # Global context, so that padding and window placement would show.
  model = GlobalContextModel()
  variables = _variables(model, (32, 32))
  batch = _batch([(32, 32), (27, 30)], (32, 32), (40, 35))

  def scores(config):
    return jax.jit(lambda v, b: inference.predict_scores(model, v, b, config))(variables, batch)

  whole = scores(_eval_config())
  for crop in [(32, 32), (64, 48)]:  # Exactly the canvas, and larger than it.
    slide = scores(_eval_config(mode='slide', crop_size=crop, stride=(16, 16)))
    np.testing.assert_allclose(slide, whole, atol=1e-5)


@pytest.mark.parametrize('mode', ['whole', 'slide'])
def test_flip_of_a_flip_symmetric_model_equals_plain_inference(mode):
  model = MirrorModel()
  variables = _variables(model)
  batch = _batch([(16, 20), (16, 20)], (16, 20), (24, 31))
  # Windows at x = 0 and 8 of width 12 on a 20-wide image: a layout that is its own mirror
  # image (mmseg's layout generally is not, and then flip changes slide results).
  config = dict(mode=mode, crop_size=(12, 12), stride=(6, 8))
  plain = inference.predict_scores(model, variables, batch, _eval_config(**config))
  flipped = inference.predict_scores(model, variables, batch, _eval_config(flip=True, **config))
  # Two views: the average of softmax probabilities, which equal the plain view's.
  np.testing.assert_allclose(flipped, jax.nn.softmax(plain, axis=-1), atol=1e-6)
  # A model that is not flip-symmetric does see a different picture when flipped.
  context = ContextModel()
  context_vars = _variables(context)
  plain = inference.predict_scores(context, context_vars, batch, _eval_config(**config))
  flipped = inference.predict_scores(context, context_vars, batch, _eval_config(flip=True,
                                                                               **config))
  assert np.abs(np.asarray(flipped) - np.asarray(jax.nn.softmax(plain, axis=-1))).max() > 1e-3


def test_flip_mirrors_only_the_image_not_its_padding():
  x = jnp.arange(2 * 1 * 5).reshape(2, 1, 5)
  out = inference.flip_valid(x, jnp.array([3, 5]))
  np.testing.assert_array_equal(out, [[[2, 1, 0, 3, 4]], [[9, 8, 7, 6, 5]]])


def test_multi_scale_with_repeated_scale_equals_whole():
  model = ContextModel()
  variables = _variables(model)
  batch = _batch([(16, 20), (11, 20)], (16, 20), (21, 17))
  whole = inference.predict_scores(model, variables, batch, _eval_config())
  twice = dict(batch, images=batch['images'] * 2, image_hws=batch['image_hws'] * 2)
  averaged = inference.predict_scores(model, variables, twice, _eval_config(scales=(1.0, 1.0)))
  np.testing.assert_allclose(averaged, jax.nn.softmax(whole, axis=-1), atol=1e-6)


def test_multi_scale_averages_the_probabilities_of_each_scale():
  model = ContextModel()
  variables = _variables(model)
  small = _batch([(8, 10)], (8, 10), (16, 20), seed=1)
  large = _batch([(16, 20)], (16, 20), (16, 20), seed=2)
  both = dict(large, images=small['images'] + large['images'],
              image_hws=small['image_hws'] + large['image_hws'])
  got = inference.predict_scores(model, variables, both, _eval_config(scales=(0.5, 1.0)))
  expected = (jax.nn.softmax(inference.predict_scores(model, variables, dict(
      large, images=small['images'], image_hws=small['image_hws']), _eval_config()), -1)
              + jax.nn.softmax(inference.predict_scores(model, variables, large,
                                                       _eval_config()), -1)) / 2
  np.testing.assert_allclose(got, expected, atol=1e-6)


def test_an_evaluation_step_traces_the_model_once_per_input_shape():
  """Slide + flip at two scales: the model is traced once for each scale's window batch (the
  flipped view and the shape query reuse that trace), and a later trace of the step for
  another label size traces it no more. (Tracing a large model for every view and window
  query made building such a step slow.)"""
  calls = []

  class Counted(nn.Module):
    @nn.compact
    def __call__(self, images, train=False):
      calls.append(images.shape)
      return ContextModel()(images, train)

  model = Counted()
  variables = _variables(model)
  calls.clear()
  small = _batch([(6, 10), (5, 9)], (6, 10), (12, 20), seed=1)
  large = _batch([(12, 20), (10, 18)], (12, 20), (12, 20), seed=2)
  batch = dict(large, images=small['images'] + large['images'],
               image_hws=small['image_hws'] + large['image_hws'],
               mask=jnp.ones((2, 12, 20), bool))
  config = _eval_config(mode='slide', crop_size=(8, 8), stride=(6, 6), windows_per_step=2,
                        flip=True, scales=(0.5, 1.0))
  step = inference.make_eval_step(model, config, sharding.make_mesh(default.get_config().mesh),
                                  ('data',), NUM_CLASSES, 255)
  step.lower(variables, batch)
  assert sorted(calls) == [(4, 6, 8, 3), (4, 8, 8, 3)], calls
  step.lower(variables, dict(batch, label=jnp.zeros((2, 7, 9), jnp.int32),
                             label_hw=jnp.asarray([(7, 9)] * 2, jnp.int32),
                             mask=jnp.ones((2, 7, 9), bool)))
  assert len(calls) == 2, calls


@pytest.mark.parametrize('image_hw,resize_scale,ratio,align,expected', [
    ((512, 683), (2048, 512), 1.0, 0, (512, 683)),
    ((512, 683), (2048, 512), 0.5, 0, (256, 342)),  # Fits (1024, 256): short side binds.
    ((512, 683), (2048, 512), 1.75, 32, (896, 1216)),  # (896, 1195) aligned up.
    ((1024, 2048), (2048, 1024), 0.75, 0, (768, 1536)),
    ((300, 200), (), 1.5, 0, (450, 300)),
    ((300, 201), (), 1.0, 32, (320, 224)),
])
def test_eval_input_size(image_hw, resize_scale, ratio, align, expected):
  assert pipeline.eval_input_size(image_hw, resize_scale, ratio, align) == expected


@pytest.mark.parametrize('field,value', [('mode', 'sliding'), ('crop_size', (0, 4)),
                                         ('stride', (4,)), ('windows_per_step', 0),
                                         ('scales', (1.0, -0.5))])
def test_bad_eval_config_names_the_field(field, value):
  with pytest.raises(ValueError, match=f'config.eval.{field}'):
    inference.check_eval_config(_eval_config(**{field: value}))


def test_slide_eval_of_a_2048x1024_image_is_planned_within_16_gib():
  """Compile-only: XLA's memory plan for the evaluation step on one 2048x1024 image, 150
  classes, 1024x1024 windows, stride 768 (compiled for CPU here; see the README), for the
  largest SegFormer (B5; every smaller variant has fewer and narrower layers). Its deep stages
  scanned (one block compiled per stage), which compiles in 60% of the time: the plan is the
  unrolled model's within 2% (3.66 against 3.70 GiB with the suite's flags, 2026-12-07)."""
  config = default.get_config()
  config.eval.mode, config.eval.crop_size, config.eval.stride = 'slide', (1024, 1024), (768, 768)
  config.eval.resize_scale = ()
  model = models.segformer.segformer('b5', 150, scan_min_depth=8)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3))))
  batch = jax.eval_shape(lambda: model_benchmark.eval_batch(config, (1024, 2048), 1,
                                                      np.random.default_rng(0)))
  mesh = sharding.make_mesh(config.mesh)
  step = inference.make_eval_step(model, config.eval, mesh, ('data',), 150, 255)
  peak = model_benchmark.planned_peak_bytes(step.lower(variables, batch).compile())
  assert 0.5 * 2**30 < peak < 16 * 2**30, peak / 2**30


def _torch_bilinear(x, out_h, out_w):
  """F.interpolate(mode='bilinear', align_corners=False) on [H, W, C], one pixel at a time."""
  in_h, in_w = x.shape[:2]
  out = np.zeros((out_h, out_w, x.shape[2]))
  def source(o, scale, size):
    s = max((o + 0.5) * scale - 0.5, 0.0)
    i0 = min(int(np.floor(s)), size - 1)
    i1 = min(i0 + 1, size - 1)
    return i0, i1, s - i0
  for y in range(out_h):
    y0, y1, fy = source(y, in_h / out_h, in_h)
    for x_ in range(out_w):
      x0, x1, fx = source(x_, in_w / out_w, in_w)
      out[y, x_] = ((1 - fy) * ((1 - fx) * x[y0, x0] + fx * x[y0, x1])
                    + fy * ((1 - fx) * x[y1, x0] + fx * x[y1, x1]))
  return out


@pytest.mark.parametrize('image_hw,label_hw', [((7, 9), (15, 20)), ((12, 10), (5, 7)),
                                               ((8, 8), (8, 8)), ((5, 11), (13, 6))])
def test_resize_to_label_matches_crop_then_bilinear(image_hw, label_hw):
  rng = np.random.default_rng(0)
  canvas = rng.normal(size=(16, 16, 3)).astype(np.float32)  # Beyond image_hw: padding.
  out = inference.resize_to_label(jnp.asarray(canvas), jnp.array(image_hw), jnp.array(label_hw),
                                 (24, 24))
  expected = _torch_bilinear(canvas[:image_hw[0], :image_hw[1]], *label_hw)
  np.testing.assert_allclose(np.asarray(out)[:label_hw[0], :label_hw[1]], expected, atol=1e-5)


def test_a_mirrored_resize_equals_flipping_the_valid_columns_first():
  """The flipped view's logits are flipped back inside the resize's gather: the same values,
  bit for bit, as flip_valid over the canvas and then the resize."""
  canvas = jnp.asarray(np.random.default_rng(2).normal(size=(16, 16, 3)), jnp.float32)
  image_hw, label_hw = jnp.array([7, 9]), jnp.array([15, 20])
  expected = inference.resize_to_label(inference.flip_valid(canvas[None], image_hw[1:])[0],
                                       image_hw, label_hw, (24, 24))
  out = inference.resize_to_label(canvas, image_hw, label_hw, (24, 24), mirrored=True)
  np.testing.assert_array_equal(np.asarray(out), np.asarray(expected))


def test_one_compiled_function_serves_any_size():
  fn = jax.jit(lambda l, i, t: inference.resize_to_label(l, i, t, (10, 10)))
  logits = jnp.asarray(np.random.default_rng(1).normal(size=(8, 8, 2)), jnp.float32)
  for image_hw, label_hw in [((8, 8), (10, 10)), ((5, 7), (9, 3))]:
    out = fn(logits, jnp.array(image_hw), jnp.array(label_hw))
    expected = _torch_bilinear(np.asarray(logits)[:image_hw[0], :image_hw[1]], *label_hw)
    np.testing.assert_allclose(np.asarray(out)[:label_hw[0], :label_hw[1]], expected, atol=1e-5)
  assert fn._cache_size() == 1


@pytest.mark.parametrize('mode,flip,views', [
    # 48x80 at scales 0.5 and 1.0 -> canvases 32x64 and 64x96 (padded to 32). Windows 32x32,
    # stride 24: 1 x 3 = 3 windows (one call of 3), 3 x 4 = 12 (three calls of 4).
    ('slide', True, [((3, 32, 32, 3), 1), ((4, 32, 32, 3), 3)]),
    ('whole', False, [((1, 32, 64, 3), 1), ((1, 64, 96, 3), 1)]),
])
def test_the_bare_model_time_counts_every_view_and_window_the_evaluation_feeds(
    mode, flip, views, monkeypatch):
  """--mode=benchmark's eval overhead is measured against the model alone on the same views:
  each scale's canvas (whole) or its windows in batches of windows_per_step (slide), twice with
  flip."""
  config = default.get_config()
  config.eval.mode, config.eval.flip, config.eval.scales = mode, flip, (0.5, 1.0)
  config.eval.resize_scale, config.eval.pad_multiple = (), 32
  config.eval.crop_size, config.eval.stride, config.eval.windows_per_step = (32, 32), (24, 24), 4
  timed = []

  def one_second_per_call(fn, args, warmup, steps, carry_first):
    del fn, warmup, steps, carry_first
    timed.append(args[1].shape)
    return 1.0
  monkeypatch.setattr(model_benchmark, '_time_steps', one_second_per_call)
  model = PixelModel()
  variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
  seconds = model_benchmark.bare_model_seconds(config, model, variables, (48, 80))
  assert timed == [shape for shape, _ in views]
  assert seconds == sum(calls for _, calls in views) * (2 if flip else 1)


def test_the_eval_figures_are_the_fastest_of_alternating_rounds(monkeypatch):
  """The evaluation step and the bare model alternate config.benchmark.eval_rounds times; each
  figure is its own fastest round (a single pass of each is at the mercy of a busy machine)."""
  config = default.get_config()
  config.benchmark.eval_image_hw, config.benchmark.eval_rounds = (16, 16), 3
  config.eval.resize_scale = ()
  order, steps, bare = [], iter([3.0, 2.5, 4.0]), iter([2.0, 1.0, 1.5])

  def time_steps(fn, args, warmup, steps_, carry_first):
    del fn, args, steps_, carry_first
    order.append(('step', warmup))
    return next(steps)

  def bare_model(config, model, variables, image_hw, warmup=1):
    del config, model, variables, image_hw
    order.append(('model', warmup))
    return next(bare)
  monkeypatch.setattr(model_benchmark, '_time_steps', time_steps)
  monkeypatch.setattr(model_benchmark, 'bare_model_seconds', bare_model)
  model = PixelModel()
  variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
  mesh = sharding.make_mesh(config.mesh)
  figures = model_benchmark.eval_figures(config, model, variables, mesh, NUM_CLASSES)
  assert order == [('step', 1), ('model', 1), ('step', 0), ('model', 0), ('step', 0),
                   ('model', 0)]
  assert (figures['eval_s_per_image'], figures['eval_model_s_per_image']) == (2.5, 1.0)
  assert figures['eval_overhead_percent'] == pytest.approx(150.0)


@pytest.mark.parametrize('field', ['batch_size', 'steps', 'eval_rounds'])
def test_a_benchmark_count_below_one_is_named_before_any_work(field, tmp_path):
  config = default.get_config()
  config.benchmark[field] = 0
  with pytest.raises(ValueError,
                     match=rf'config\.benchmark\.{field}=0; expected an integer >= 1'):
    main.run('benchmark', config, str(tmp_path))
  assert not list(tmp_path.iterdir())
