"""The data modes and sources end to end through `semseg_jax.main` (in-process): training from
a folder, a TFDS dataset and ArrayRecord shards; skipping bad files; check_data;
data_benchmark."""

import json
import logging
import pathlib

import numpy as np
import pytest
from PIL import Image

from configs import default
from semseg_jax import main
from semseg_jax.data import write_arrayrecord
from semseg_jax.data.datasets import folder
from tests.helpers import bad_files
from tests.helpers import e2e_config
from tests.helpers import run_main

CLASSES = ('sky', 'road', 'car')


def _folder_tree(directory: pathlib.Path) -> pathlib.Path:
  """folder's example tree for CLASSES: images/{train,val}/<split>_<k>.jpg (6 and 3) with
  labels/<split>/<split>_<k>.png (values 0..2, 255 ignored)."""
  config = e2e_config.apply(default.get_config(), _overrides(**{'data.name': 'folder'}))
  return pathlib.Path(folder.write_example_tree(str(directory), config.data, num_train=6,
                                                num_eval=3))


def _overrides(**extra) -> dict:
  return {'data.num_workers': 0, 'data.class_names': CLASSES, 'augment.crop_size': (32, 32),
          'augment.resize_scale': (64, 32), 'train.batch_size': 2, 'train.num_steps': 4,
          'train.eval_every': 4, 'train.log_every': 1, 'eval.resize_scale': (64, 32),
          'eval.batch_size': 2, 'schedule.warmup_steps': 1,
          **e2e_config.UNET, **extra}


def _run(mode, workdir, overrides):
  return main.run(mode, e2e_config.apply(default.get_config(), overrides), str(workdir))


@pytest.mark.slow(35)
@pytest.mark.parametrize('kind', ['tfds', 'arrayrecord'])  # Folder: the next test.
def test_training_runs_from_each_source_type(tmp_path, tfds_dir, kind):
  if kind == 'tfds':
    overrides = _overrides(**{
        'data.name': 'tfds:tiny_segmentation', 'data.tfds.data_dir': str(tfds_dir),
        'data.tfds.image_feature': 'picture', 'data.tfds.label_feature': 'mask',
        'data.reduce_zero_label': True, 'data.eval_split': 'test'})
  else:
    root = _folder_tree(tmp_path / 'data')
    overrides = _overrides(**{'data.name': 'folder', 'data.root': str(root)})
    if kind == 'arrayrecord':
      config = e2e_config.apply(default.get_config(), overrides)
      for split in ('train', 'val'):
        write_arrayrecord.convert_split(config, split, str(tmp_path / 'packed'), workers=1)
      overrides = _overrides(**{'data.name': f'arrayrecord:{tmp_path / "packed"}'})
  _run('train', tmp_path / 'run', overrides)
  record = run_main.records(tmp_path / 'run')[-1]
  assert record['step'] == 4 and len(record['IoU']) == 3
  assert np.isfinite(record['aAcc'])


@pytest.mark.slow(40)
def test_folder_training_stops_on_a_bad_file_or_skips_and_counts_it(tmp_path, caplog):
  root = _folder_tree(tmp_path / 'data')
  bad_train = root / 'images' / 'train' / 'train_2.jpg'
  bad_train.write_bytes(bad_train.read_bytes()[:100])  # Truncated.
  # Four steps of two (8 images of 6): the bad one is read. The same steps as the other source
  # types' runs, so that these tests share their compiled programs.
  overrides = _overrides(**{'data.name': 'folder', 'data.root': str(root)})
  with pytest.raises(Exception, match=str(bad_train)):
    _run('train', tmp_path / 'stopped', overrides)
  bad_val = root / 'images' / 'val' / 'val_1.jpg'
  bad_val.write_bytes(b'')  # Emptied: its evaluation is skipped and counted too.
  bomb = root / 'labels' / 'val' / 'val_2.png'  # Claims 30000 x 30000: a bad file too.
  bad_files.write_decompression_bomb(bomb)
  overrides.update({'data.skip_bad_examples': True, 'data.max_bad_fraction': 0.7})
  caplog.set_level(logging.INFO)
  _run('train', tmp_path / 'skipped', overrides)
  assert 'skipped 1 bad example(s)' in caplog.text and str(bad_train) in caplog.text
  assert str(bad_val) in caplog.text and f'{bomb}: its header claims' in caplog.text
  record = run_main.records(tmp_path / 'skipped')[-1]
  assert record['step'] == 4 and len(record['IoU']) == 3  # Folder source, end to end.
  assert record['skipped_examples'] == 2  # metrics.jsonl says what the evaluation left out.


def test_check_data_reports_problems_and_class_frequencies(tmp_path, caplog):
  root = _folder_tree(tmp_path / 'data')
  bad_label = root / 'labels' / 'val' / 'val_1.png'
  label = np.array(Image.open(bad_label))
  label[3, 3] = 7
  Image.fromarray(label).save(bad_label)
  bomb = root / 'images' / 'val' / 'val_2.jpg'  # A header claiming 30000 x 30000 pixels.
  bad_files.write_decompression_bomb(bomb)
  workdir = tmp_path / 'check'
  caplog.set_level(logging.INFO)
  with pytest.raises(Exception, match='check_data found problems'):
    _run('check_data', workdir, _overrides(**{'data.name': 'folder', 'data.root': str(root)}))
  val = json.loads((workdir / 'check_data_val.json').read_text())
  assert len(val['problems']) == 2 and str(bad_label) in val['problems'][0]
  assert '7 (1 px)' in val['problems'][0]
  assert f'{bomb}: its header claims' in val['problems'][1]
  train = json.loads((workdir / 'check_data_train.json').read_text())
  counts, ignored = np.zeros(3, np.int64), 0
  for path in sorted((root / 'labels' / 'train').glob('*.png')):
    raw = np.array(Image.open(path))
    counts += np.bincount(raw[raw != 255], minlength=3)
    ignored += int((raw == 255).sum())
  assert train['problems'] == [] and train['class_pixels'] == counts.tolist()
  assert train['ignored_pixels'] == ignored > 0
  np.testing.assert_allclose(train['class_frequency'], counts / counts.sum(), atol=1e-6)
  assert 'median_frequency weights: --config.loss.class_weights=' in caplog.text


def test_data_benchmark_prints_images_per_second(tmp_path, capsys):
  root = _folder_tree(tmp_path / 'data')
  _run('data_benchmark', tmp_path / 'bench', _overrides(**{
      'data.name': 'folder', 'data.root': str(root), 'benchmark.data_workers': (1,),
      'benchmark.data_batches': 2, 'benchmark.data_warmup_batches': 1}))
  printed = capsys.readouterr().out
  assert 'single core (in process, 1 thread)' in printed
  assert '1 worker process(es)' in printed
  figures = json.loads((tmp_path / 'bench' / 'data_benchmark.json').read_text())
  assert [r['workers'] for r in figures['runs']] == [0, 1]
  assert all(r['images_per_s'] > 0 for r in figures['runs'])
