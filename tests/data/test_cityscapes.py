"""Cityscapes on a tiny tree with the release's layout: labelIds and labelTrainIds decoding."""

import pathlib

import numpy as np
import pytest
from PIL import Image

from configs import default
from semseg_jax.data import datasets
from semseg_jax.data.datasets import cityscapes
from semseg_jax.data.datasets import files

# cityscapesScripts labels.py, written out here on its own: (labelId, trainId) for ids 0..33.
ID_TO_TRAIN_ID = [
    (0, 255), (1, 255), (2, 255), (3, 255), (4, 255), (5, 255), (6, 255), (7, 0), (8, 1),
    (9, 255), (10, 255), (11, 2), (12, 3), (13, 4), (14, 255), (15, 255), (16, 255), (17, 5),
    (18, 255), (19, 6), (20, 7), (21, 8), (22, 9), (23, 10), (24, 11), (25, 12), (26, 13),
    (27, 14), (28, 15), (29, 255), (30, 255), (31, 16), (32, 17), (33, 18)]


def _config(root, split='train'):
  config = default.get_config()
  config.data.name = 'cityscapes'
  config.data.root = str(root)
  return config


def make_cityscapes_tree(directory: pathlib.Path, train_ids: bool = False) -> pathlib.Path:
  """The example tree (train and val: aachen, bochum / frankfurt, two frames each)."""
  return pathlib.Path(cityscapes.write_example_tree(str(directory), _config(None).data,
                                                    train_ids=train_ids))


def _expected(ids: np.ndarray, ignore_index=255) -> np.ndarray:
  out = np.full(ids.shape, -1)
  for label_id, train_id in ID_TO_TRAIN_ID:
    out[ids == label_id] = ignore_index if train_id == 255 else train_id
  assert (out >= 0).all()
  return out


@pytest.mark.parametrize('train_ids', [False, True])
def test_labels_decode_pixel_for_pixel(tmp_path, train_ids):
  root = make_cityscapes_tree(tmp_path, train_ids=train_ids)
  config = _config(root)
  config.data.ignore_index = 250
  source = datasets.make_source(config.data, 'train')
  assert len(source) == 4 and source.num_classes == 19
  assert source.name(0) == 'aachen_000000_000019' and source.name(3) == 'bochum_000000_000123'
  for i in range(len(source)):
    item = source[i]
    path = pathlib.Path(source.label_path(i))
    assert path.name.endswith('labelTrainIds.png' if train_ids else 'labelIds.png')
    ids_path = path.parent / path.name.replace('labelTrainIds', 'labelIds')
    ids = np.array(Image.open(ids_path))
    assert set(np.unique(ids)) == set(range(34))  # Every labelId occurs.
    expected = _expected(ids, 255 if train_ids else 250)
    if train_ids:  # Stored 255 is the ignore label of the file; it becomes config's 250.
      expected[expected == 255] = 250
    np.testing.assert_array_equal(item['label'], expected)
    assert item['image'].shape == (*ids.shape, 3) and source.image_size(i) == ids.shape
  assert len(datasets.make_source(config.data, 'val')) == 2


def test_class_metadata():
  assert cityscapes.CLASS_NAMES[0] == 'road' and cityscapes.CLASS_NAMES[-1] == 'bicycle'
  assert cityscapes.PALETTE.shape == (19, 3)
  np.testing.assert_array_equal(cityscapes.PALETTE[13], [0, 0, 142])  # car
  names, palette = datasets.class_names_and_palette(_config('unused').data)
  assert names == cityscapes.CLASS_NAMES and palette is cityscapes.PALETTE


def test_partial_train_ids_fall_back_to_label_ids(tmp_path):
  root = make_cityscapes_tree(tmp_path, train_ids=True)
  next((root / 'gtFine' / 'train' / 'bochum').glob('*labelTrainIds.png')).unlink()
  source = datasets.make_source(_config(root).data, 'train')
  assert all(source.label_path(i).endswith('_labelIds.png') for i in range(len(source)))


def test_unknown_label_id_names_the_file_and_values(tmp_path):
  root = make_cityscapes_tree(tmp_path)
  path = root / 'gtFine' / 'val' / 'frankfurt' / 'frankfurt_000000_000019_gtFine_labelIds.png'
  ids = np.array(Image.open(path))
  ids[0, :3] = 34
  ids[1, 0] = 200
  Image.fromarray(ids).save(path)
  source = datasets.make_source(_config(root).data, 'val')
  with pytest.raises(files.DataError) as info:
    source[0]
  message = str(info.value)
  assert str(path) in message and '34 (3 px)' in message and '200 (1 px)' in message
  source[1]


def test_size_mismatch_names_both_files(tmp_path):
  root = make_cityscapes_tree(tmp_path)
  path = root / 'gtFine' / 'val' / 'frankfurt' / 'frankfurt_000000_000123_gtFine_labelIds.png'
  height, width = np.array(Image.open(path)).shape
  Image.fromarray(np.zeros((height - 4, width), np.uint8)).save(path)
  with pytest.raises(files.DataError) as info:
    datasets.make_source(_config(root).data, 'val')[1]
  message = str(info.value)
  assert str(path) in message and 'frankfurt_000000_000123_leftImg8bit.png' in message
  assert f'{height}x{width}' in message and f'{height - 4}x{width}' in message


def test_layout_errors_name_the_expected_paths(tmp_path):
  root = make_cityscapes_tree(tmp_path)
  with pytest.raises(ValueError, match=str(root / 'leftImg8bit' / 'test')):
    datasets.make_source(_config(root).data, 'test')
  with pytest.raises(ValueError, match='root should be'):
    datasets.make_source(_config(tmp_path).data, 'train')
  (root / 'gtFine' / 'val' / 'frankfurt' / 'frankfurt_000000_000019_gtFine_labelIds.png').unlink()
  with pytest.raises(ValueError, match='1 image.*have no label.*frankfurt_000000_000019'):
    datasets.make_source(_config(root).data, 'val')


def test_test_split_labels_are_withheld(tmp_path):
  root = cityscapes.write_example_tree(str(tmp_path), _config(None).data, splits=('test',))
  source = datasets.make_source(_config(root).data, 'test')
  assert [source.name(i) for i in range(len(source))] == ['berlin_000000_000019',
                                                          'berlin_000000_000123']
  for i in range(len(source)):
    assert (source[i]['label'] == 255).all()  # Ids 0..3 only: every pixel is ignored.
