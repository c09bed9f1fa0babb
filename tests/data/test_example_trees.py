"""Every dataset's example tree (`write_example_tree`) reads back through `make_source`: both
splits of each dataset's benchmark setting (all its variants), labels reduced as the dataset
defines them (every class and the configured ignore label, nothing else), deterministic."""

import time

import numpy as np
import pytest

from configs import datasets as dataset_settings
from configs import default
from semseg_jax.data import datasets

IGNORE = 250  # Not 255: a raw 255 that was not mapped would show.


def _config(setting: str, **fields):
  """configs/datasets.py's `setting` ('' = default.py's) with config.data `fields` set
  ('folder.split_list' for config.data.folder.split_list)."""
  config = default.get_config()
  if setting:
    config = dataset_settings.SETTINGS[setting](config)
  for key, value in fields.items():
    *parents, leaf = key.split('.')
    node = config.data
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  return config


FOLDER = {'name': 'folder', 'class_names': ('sky', 'road', 'car'), 'ignore_index': IGNORE}
# Case -> (setting, config.data fields): each dataset's benchmark setting(s) with every
# variant, and folder's label encodings.
CASES = {
    'ade20k': ('ade20k', {}),
    'cityscapes': ('cityscapes', {}),
    'camvid': ('camvid', {}),
    'voc2012 train/val': ('voc12aug', {'train_split': 'train'}),
    'voc12aug train_aug/val': ('voc12aug', {}),
    'pascal_context 59': ('pascal_context_59', {}),
    'pascal_context 60': ('pascal_context_60', {}),
    'coco_stuff 164k': ('coco_stuff164k', {}),
    'coco_stuff 10k': ('coco_stuff10k', {}),
    'mapillary': ('mapillary', {}),
    'folder index': ('', FOLDER),
    'folder reduce_zero_label, split list': ('', {
        **FOLDER, 'reduce_zero_label': True, 'folder.split_list': 'lists/{split}.txt'}),
    'folder colour masks': ('', {
        **FOLDER, 'label_colors': ((10, 20, 30), (200, 0, 0), (0, 200, 0)),
        'ignore_colors': ((0, 0, 0),), 'folder.image_dir': 'rgb/{split}',
        'folder.label_dir': 'masks/{split}', 'folder.image_suffix': '.png',
        'folder.label_suffix': '_mask.png'}),
}


def _case(case: str):
  setting, fields = CASES[case]
  return _config(setting, **{'ignore_index': IGNORE, **fields})


def test_every_dataset_with_files_has_a_case():
  with_writer = {k for k, d in datasets.DATASETS.items() if d.write_example_tree is not None}
  assert with_writer == {datasets.kind(_case(case).data.name) for case in CASES}
  assert {k for k in datasets.DATASETS if k not in with_writer} == {
      'synthetic', 'tfds', 'arrayrecord'}


@pytest.mark.parametrize('case', list(CASES))
def test_example_tree_reads_back_reduced(tmp_path, case):
  config = _case(case)
  start = time.perf_counter()
  root = datasets.write_example_tree(config.data, str(tmp_path / 'a'))
  seconds = time.perf_counter() - start
  assert seconds < 1.0, f'{case}: writing took {seconds:.2f} s'
  config.data.root = root
  again = config.copy_and_resolve_references()
  again.data.root = datasets.write_example_tree(config.data, str(tmp_path / 'b'))
  names, palette = datasets.class_names_and_palette(config.data)
  num_classes = len(names)
  shapes = []
  for split in (config.data.train_split, config.data.eval_split):
    source = datasets.make_source(config.data, split)
    same = datasets.make_source(again.data, split)
    assert 2 <= len(source) == len(same) <= 6
    assert source.class_names == names and source.num_classes == num_classes
    np.testing.assert_array_equal(source.palette, palette)
    values = set()
    for i in range(len(source)):
      item = source[i]
      image, label = item['image'], item['label']
      assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
      assert label.dtype == np.uint8 and label.shape == image.shape[:2] == source.image_size(i)
      assert all(40 <= side <= 80 for side in label.shape)
      shapes.append(label.shape)
      values |= set(np.unique(label).tolist())
      assert source.name(i) == same.name(i)  # Deterministic: the same examples again.
      for key in ('image', 'label'):
        np.testing.assert_array_equal(item[key], same[i][key])
    # Reduced as the dataset defines: every class occurs, unlabelled pixels are the configured
    # ignore label, and nothing else is left.
    assert values == set(range(num_classes)) | {IGNORE}, (case, split)
  assert any(h > w for h, w in shapes) and any(h < w for h, w in shapes)  # Both orientations.


@pytest.mark.parametrize('name', ['synthetic', 'tfds:x', 'arrayrecord:/x'])
def test_kinds_without_files_have_no_example_tree(tmp_path, name):
  config = default.get_config()
  config.data.name = name
  with pytest.raises(ValueError, match=f"config.data.name='{name}' reads no dataset files"):
    datasets.write_example_tree(config.data, str(tmp_path))


def test_a_split_the_dataset_lacks_names_the_field(tmp_path):
  config = _config('cityscapes', eval_split='testing')
  with pytest.raises(ValueError, match=r"config.data.eval_split='testing' is not a split"):
    datasets.write_example_tree(config.data, str(tmp_path))
  config = _config('coco_stuff164k', eval_split='test')  # A split of 10k only.
  with pytest.raises(ValueError, match=r"COCO-Stuff 164k: config.data.eval_split='test'"):
    datasets.write_example_tree(config.data, str(tmp_path))
  config = _config('', **{**FOLDER, 'class_names': ()})
  with pytest.raises(ValueError, match='config.data.class_names is empty'):
    datasets.write_example_tree(config.data, str(tmp_path))
