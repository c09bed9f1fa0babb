"""What happens to a config before it runs: class weights computed from the training labels,
bad settings named, the example tree of a smoke run written once."""

import math

import numpy as np
import pytest

from configs import camvid_enet
from semseg_jax import prepare
from semseg_jax.data import check
from tests.helpers import e2e_config


def test_class_weighting_is_computed_from_the_training_labels():
  config = e2e_config.tiny_quickstart()
  config.loss.class_weighting = 'enet'
  prepare.check_config(config)
  prepare.resolve_class_weighting(config)
  weights = config.loss.class_weights
  assert len(weights) > 1 and all(w > 0 and math.isfinite(w) for w in weights)
  # ENet's weights lie between 1 / ln(2.02) (a class of every pixel) and 1 / ln(1.02).
  assert all(1 / math.log(2.02) <= w <= 1 / math.log(1.02) for w in weights)


def test_class_weights_follow_their_papers_formulas():
  """Median frequency balancing (SegNet: median of freq_c / freq_c, freq_c = pixels of c over
  the pixels of the images holding c), ENet's 1 / ln(1.02 + share_c), LinkNet's Torch7 code's
  1 / ln(1.02 + pixels_c / pixels of the most frequent class); absent classes weigh 0."""
  rng = np.random.default_rng(0)
  pixels = rng.integers(1, 10_000, 7).astype(np.int64)
  pixels[3] = 0
  image_pixels = pixels + rng.integers(0, 50_000, 7)
  image_pixels[3] = 0
  weights = check.class_weights(pixels, image_pixels)
  present = [c for c in range(7) if c != 3]
  freq = {c: pixels[c] / image_pixels[c] for c in present}
  median = float(np.median(list(freq.values())))
  expected = {
      'median_frequency': [median / freq[c] if c in freq else 0.0 for c in range(7)],
      'enet': [1 / math.log(1.02 + pixels[c] / pixels.sum()) if c in freq else 0.0
               for c in range(7)],
      'linknet': [1 / math.log(1.02 + pixels[c] / pixels.max()) if c in freq else 0.0
                  for c in range(7)],
      'espnet': [1 / math.log(1.10 + pixels[c] / pixels.sum()) if c in freq else 0.0
                 for c in range(7)],
  }
  assert weights.keys() == expected.keys()
  for kind, values in expected.items():
    np.testing.assert_allclose(weights[kind], values, atol=5e-5, err_msg=kind)


@pytest.mark.parametrize('field, value, message', [
    ('class_weighting', 'inverse', 'expected median_frequency, enet, linknet, espnet'),
    ('class_weights', (1.0, 2.0), 'both set'),
])
def test_bad_class_weighting_settings_name_the_field(field, value, message):
  config = camvid_enet.get_config()
  config.loss[field] = value
  with pytest.raises(ValueError, match=message):
    prepare.check_config(config)


@pytest.mark.parametrize('field, value, message', [
    ('model.name', 'segformerr', 'config.model.name'),
    ('loss.aux', (('dicee', 1.0, {}),), 'config.loss.aux'),
    ('eval.mode', 'sliding', 'config.eval.mode'),
    ('data.channel_order', 'rbg', 'config.data.channel_order'),
    ('model.backbone_pretrained', 'x', 'both set'),
    ('data.max_image_pixels', 0, 'config.data.max_image_pixels'),
])
def test_bad_settings_name_the_field(field, value, message):
  config = e2e_config.tiny_quickstart()
  config.model.pretrained = 'x' if field == 'model.backbone_pretrained' else ''
  e2e_config.apply(config, {field: value})
  with pytest.raises(ValueError, match=message):
    prepare.check_config(config)


def test_a_smoke_run_writes_its_example_tree_once(tmp_path):
  config = camvid_enet.get_config('smoke')
  prepare.write_example_tree(config, str(tmp_path))
  root = config.data.root
  assert root.startswith(str(tmp_path / 'example_data'))
  stamp = (tmp_path / 'example_data' / 'root.txt').stat().st_mtime_ns
  again = camvid_enet.get_config('smoke')
  prepare.write_example_tree(again, str(tmp_path))
  assert again.data.root == root
  assert (tmp_path / 'example_data' / 'root.txt').stat().st_mtime_ns == stamp
