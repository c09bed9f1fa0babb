"""Monte-Carlo dropout evaluation (config.eval.mc_dropout_samples) through the evaluation step,
and its uncertainty maps in predict mode."""

import jax
import numpy as np
import pytest
from PIL import Image

from configs import default
from semseg_jax import sharding
from semseg_jax.evaluators import inference
from semseg_jax.evaluators import mc_dropout
from semseg_jax.evaluators import predict
from semseg_jax.models.segformer import segformer
from semseg_jax.models.segnet import segnet
from semseg_jax.tools import model_benchmark

NUM_CLASSES = 4


def _config(samples: int, flip: bool = False):
  config = default.get_config()
  config.eval.resize_scale = ()
  config.eval.mc_dropout_samples = samples
  config.eval.flip = flip
  config.eval.pad_multiple = 8
  return config


@pytest.fixture(scope='module')
def bayesian():
  model = segnet('bayesian', NUM_CLASSES, widths=(4, 8, 8, 8, 8))
  variables = jax.jit(lambda x: model.init({'params': jax.random.key(0)}, x))(
      np.zeros((1, 16, 16, 3), np.float32))
  return model, variables


@pytest.mark.parametrize('flip', [False, True])
def test_eval_step_predicts_the_mean_of_the_samples(bayesian, flip):
  model, variables = bayesian
  config = _config(5, flip)
  mesh = sharding.make_mesh(config.mesh)
  batch = model_benchmark.eval_batch(config, (13, 19), 2, np.random.default_rng(0))
  step = inference.make_eval_step(model, config.eval, mesh, ('data',), NUM_CLASSES, 255)
  _, outputs = step(variables, batch)
  pred, uncertainty = np.asarray(outputs['pred']), np.asarray(outputs['uncertainty'])
  assert pred.shape == uncertainty.shape == (2, 13, 19)
  # Directly: the mean probabilities of 5 samples on the (flipped) padded image, cropped.
  images = batch['images'][0]
  views = [(images, False)] + ([(images[:, :, ::-1], True)] if flip else [])
  total_probs, total_uncertainty = 0.0, 0.0
  for view, flipped in views:
    if flipped:  # Flip only the valid image, as the evaluator does.
      view = np.asarray(images).copy()
      view[:, :13, :19] = np.asarray(images)[:, :13, 19 - 1::-1]
    mean, unc = mc_dropout.mc_dropout_probabilities(model, variables, view, jax.random.key(0), 5)
    mean, unc = np.asarray(mean)[:, :13, :19], np.asarray(unc)[:, :13, :19]
    if flipped:
      mean, unc = mean[:, :, ::-1], unc[:, :, ::-1]
    total_probs, total_uncertainty = total_probs + mean, total_uncertainty + unc
  np.testing.assert_array_equal(pred, np.argmax(total_probs, axis=-1))
  np.testing.assert_allclose(uncertainty, total_uncertainty / len(views), atol=1e-6)
  assert uncertainty.max() > 0  # Dropout 0.5 makes the samples differ.


def test_models_without_mc_dropout_are_refused():
  config = _config(3)
  mesh = sharding.make_mesh(config.mesh)
  with pytest.raises(ValueError, match='mc_dropout_samples=3.*set it to 0'):
    inference.make_eval_step(segformer('b0', NUM_CLASSES), config.eval, mesh, ('data',),
                            NUM_CLASSES, 255)


def test_uncertainty_pictures(tmp_path):
  uncertainty = np.array([[0.0, 0.125], [0.25, 0.5]], np.float32)
  predict.write_uncertainty(str(tmp_path), 'frame', uncertainty)
  np.testing.assert_array_equal(np.load(tmp_path / 'uncertainty' / 'frame.npy'), uncertainty)
  picture = np.asarray(Image.open(tmp_path / 'uncertainty' / 'frame.png'))
  np.testing.assert_array_equal(picture, [[0, 32768], [65535, 65535]])
