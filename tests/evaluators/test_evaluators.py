"""Evaluators configured in config.evals: settings merged over config.eval, when each runs, the
segmentation and prediction evaluators on one model, and entries that cannot work named."""

import json

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import pytest
from PIL import Image

from configs import default
from semseg_jax import evaluators
from semseg_jax import logs
from semseg_jax import sharding
from semseg_jax.data import datasets
from semseg_jax.evaluators import common
from tests.helpers import e2e_config


class PixelModel(nn.Module):
  """Per-pixel logits (a 1x1 conv), so that any inference setting compiles fast."""
  num_classes: int

  @nn.compact
  def __call__(self, images, train=False):
    return {'logits': nn.Conv(self.num_classes, (1, 1))(images), 'aux': []}


def _config():
  config = e2e_config.tiny_quickstart()
  config.train.eval_every = 5
  default.add_evaluator(config, 'val_flip', every_steps=0, flip=True, batch_size=4)
  default.add_evaluator(config, 'labels', type='predict', every_steps=-1, num_overlays=0)
  return config


def test_an_entry_takes_config_eval_where_it_sets_nothing():
  config = _config()
  settings = common.settings_of(config, 'val_flip')
  assert settings.flip and settings.batch_size == 4
  assert settings.mode == config.eval.mode and tuple(settings.resize_scale) == ()
  assert common.split_of(config, 'val_flip') == 'val'
  assert [common.every_steps_of(config, n) for n in ('labels', 'val', 'val_flip')] == [-1, 5, 0]


@pytest.mark.parametrize('every_steps, due', [(5, [5, 10, 12]), (0, [12]), (12, [12])])
def test_an_evaluator_runs_every_n_steps_and_at_the_end(every_steps, due):
  assert [s for s in range(1, 13) if evaluators.due(every_steps, s, 12)] == due


def test_segmentation_and_prediction_evaluators_on_one_model(tmp_path):
  config = _config()
  num_classes = len(datasets.synthetic.CLASS_NAMES)
  model = PixelModel(num_classes)
  variables = model.init(jax.random.key(0), np.zeros((1, 8, 8, 3), np.float32))
  mesh = sharding.make_mesh(config.mesh)
  writer = logs.make_writer(str(tmp_path))
  built = evaluators.from_config(config, model, mesh, str(tmp_path), writer, num_classes)
  assert [(name, every) for name, _, every in built] == [('val', 5), ('val_flip', 0)]
  results = {name: evaluator.run(variables, 7) for name, evaluator, _ in built}
  records = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert [(r['evaluator'], r['split'], r['step']) for r in records] == [
      ('val', 'val', 7), ('val_flip', 'val', 7)]
  # A per-pixel model sees a mirrored image pixel for pixel: flip changes nothing.
  assert results['val']['mIoU'] == results['val_flip']['mIoU']
  assert (tmp_path / 'confusion_val_flip_step_0000007.npy').is_file()
  assert len(list((tmp_path / 'overlays' / 'val' / 'step_0000007').iterdir())) == 2

  # The 'predict' entry (never run in training) writes every image's label map.
  labels = evaluators.EVALUATORS['predict']('labels', config, model, mesh, str(tmp_path), writer,
                                            num_classes)
  assert labels.run(variables, 7) == {'images': 16}
  source = datasets.make_source(config.data, 'val')
  written = sorted(p.stem for p in (tmp_path / 'predictions' / 'labels' / 'labels').iterdir())
  assert written == sorted(source.name(i) for i in range(len(source)))
  label = np.asarray(Image.open(tmp_path / 'predictions' / 'labels' / 'labels' /
                                f'{source.name(0)}.png'))
  assert label.shape == source[0]['label'].shape and label.max() < num_classes
  writer.close()


@pytest.mark.parametrize('change, message', [
    (lambda c: c.evals.val.update({'type': 'confusion'}), 'config.evals.val.type'),
    (lambda c: c.evals.val.update({'every_steps': -2}), 'config.evals.val.every_steps'),
    (lambda c: c.evals.val.update({'mode': 'tiles'}), 'config.evals.val.mode'),
    (lambda c: c.evals.val.update({'stride': (0, 4)}), 'config.evals.val.stride'),
])
def test_an_entry_that_cannot_work_is_named(change, message):
  config = _config()
  with config.evals.val.unlocked():
    change(config)
  with pytest.raises(ValueError, match=message):
    evaluators.check(config)


def test_an_entry_made_by_hand_must_have_every_field():
  config = _config()
  with config.evals.unlocked():
    config.evals.partial = ml_collections.ConfigDict({'type': 'segmentation', 'split': 'val'})
  with pytest.raises(ValueError, match='config.evals.partial must be made by'):
    evaluators.check(config)
  with pytest.raises(ValueError, match="unknown field 'flipp'"):
    default.evaluator(flipp=True)
