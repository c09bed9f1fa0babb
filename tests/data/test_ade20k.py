"""ADE20K source on a tiny tree with the release's layout: labels, sizes, errors, pickling."""

import pathlib
import pickle
import shutil

import numpy as np
import pytest
from PIL import Image

from configs import default
from semseg_jax.data.datasets import ade20k
from semseg_jax.data.datasets import files


def _write_tree(directory: pathlib.Path, **options) -> pathlib.Path:
  """ade20k.write_example_tree with config.data's train and val splits."""
  data = default.get_config().data
  data.name = 'ade20k'
  return pathlib.Path(ade20k.write_example_tree(str(directory), data, **options))


@pytest.fixture
def tree(tmp_path) -> pathlib.Path:
  return _write_tree(tmp_path / 'data', num_train=4, num_val=3, seed=0)


def _raw_label(path: pathlib.Path) -> np.ndarray:
  with Image.open(path) as image:
    assert image.mode == 'L'
    return np.array(image)


# --- Metadata -------------------------------------------------------------------------------------


def test_class_names_follow_mmseg_and_object_info_150():
  names = ade20k.CLASS_NAMES
  assert isinstance(names, tuple) and len(names) == 150 == ade20k.NUM_CLASSES
  assert len(set(names)) == 150
  assert all(isinstance(n, str) and n == n.strip() and n for n in names)
  assert names[:8] == ('wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road', 'bed')
  assert names[12] == 'person' and names[20] == 'car' and names[44] == 'chest of drawers'
  assert names[-3:] == ('glass', 'clock', 'flag')
  assert ade20k.ADE20KSource.class_names is names


def test_palette_matches_mmseg():
  palette = ade20k.PALETTE
  assert palette.shape == (150, 3) and palette.dtype == np.uint8
  np.testing.assert_array_equal(palette[:4], [[120, 120, 120], [180, 120, 120], [6, 230, 230],
                                              [80, 50, 50]])
  np.testing.assert_array_equal(palette[12], [150, 5, 61])  # person
  np.testing.assert_array_equal(palette[-1], [92, 0, 255])
  assert ade20k.SPLITS == {'train': 'training', 'val': 'validation'}


def test_reduce_zero_label_maps_every_value():
  raw = np.arange(151, dtype=np.uint8).reshape(1, 151)
  before = raw.copy()
  out = ade20k.reduce_zero_label(raw)
  assert out.dtype == np.uint8 and out.shape == raw.shape
  assert out[0, 0] == 255
  np.testing.assert_array_equal(out[0, 1:], np.arange(150))
  np.testing.assert_array_equal(raw, before)  # Input untouched.
  assert ade20k.reduce_zero_label(raw, ignore_index=200)[0, 0] == 200
  with pytest.raises(ValueError, match='ignore_index'):
    ade20k.reduce_zero_label(raw, ignore_index=3)  # Would collide with a class.


# --- Loading --------------------------------------------------------------------------------------


def test_example_tree_has_release_layout(tree):
  assert tree.name == 'ADEChallengeData2016'
  assert sorted(p.name for p in (tree / 'images' / 'validation').iterdir()) == [
      'ADE_val_00000001.jpg', 'ADE_val_00000002.jpg', 'ADE_val_00000003.jpg']
  shapes = [_raw_label(p).shape for p in (tree / 'annotations').rglob('*.png')]
  assert any(h > w for h, w in shapes) and any(h < w for h, w in shapes)


@pytest.mark.parametrize('split,count,prefix', [('train', 4, 'ADE_train_'), ('val', 3, 'ADE_val_')])
def test_items_load_with_labels_reduced_once(tree, split, count, prefix):
  source = ade20k.ADE20KSource(str(tree), split)
  assert len(source) == count
  assert source.num_classes == 150 and source.palette.shape == (150, 3)
  assert [source.name(i) for i in range(count)] == [f'{prefix}{k:08d}' for k in range(1, count + 1)]
  for i in range(count):
    item = source[i]
    assert set(item) == {'image', 'label', 'index'} and item['index'] == i
    image, label = item['image'], item['label']
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert label.dtype == np.uint8 and label.shape == image.shape[:2]
    raw = _raw_label(tree / 'annotations' / ade20k.SPLITS[split] / f'{source.name(i)}.png')
    assert raw.min() == 0 and raw.max() == 150  # The example tree covers both ends.
    np.testing.assert_array_equal(label[raw == 0], 255)
    np.testing.assert_array_equal(label[raw > 0], raw[raw > 0].astype(np.int64) - 1)
    assert label[raw > 0].max() == 149
    assert source.image_size(i) == image.shape[:2]
    image[0, 0] = 0  # Items are writable arrays of their own.


def test_ignore_index_is_configurable(tree):
  source = ade20k.ADE20KSource(str(tree), 'val', ignore_index=254)
  raw = _raw_label(tree / 'annotations' / 'validation' / 'ADE_val_00000001.png')
  np.testing.assert_array_equal(source[0]['label'][raw == 0], 254)


def test_index_bounds(tree):
  source = ade20k.ADE20KSource(str(tree), 'val')
  assert source[np.int64(1)]['index'] == 1
  assert source[-1]['index'] == 2
  with pytest.raises(IndexError):
    source[3]


def test_image_size_reads_only_the_header(tree):
  path = tree / 'images' / 'training' / 'ADE_train_00000002.jpg'
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 3])  # Header intact, pixel data cut short.
  source = ade20k.ADE20KSource(str(tree), 'train')
  assert source.image_size(1) == (72, 40)
  with pytest.raises(files.DataError, match='ADE_train_00000002.jpg'):
    source[1]


def test_greyscale_jpeg_comes_out_rgb(tree):
  path = tree / 'images' / 'training' / 'ADE_train_00000001.jpg'
  with Image.open(path) as image:
    image.convert('L').save(path, format='JPEG')
  item = ade20k.ADE20KSource(str(tree), 'train')[0]
  assert item['image'].shape == (48, 64, 3)


def test_source_pickles(tree):
  source = ade20k.ADE20KSource(str(tree), 'train')
  copy = pickle.loads(pickle.dumps(source))
  assert len(copy) == len(source) and copy.name(2) == source.name(2)
  for key in ('image', 'label'):
    np.testing.assert_array_equal(copy[2][key], source[2][key])
  assert all(isinstance(v, (str, int, tuple)) for v in vars(source).values())


# --- Errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize('root', [None, '', '   '])
def test_no_root(root):
  with pytest.raises(ValueError, match='ADEChallengeData2016') as info:
    ade20k.ADE20KSource(root, 'train')
  assert 'annotations/' in str(info.value)  # The layout is shown.


def test_missing_root(tmp_path):
  missing = tmp_path / 'nowhere' / 'ADEChallengeData2016'
  with pytest.raises(ValueError) as info:
    ade20k.ADE20KSource(str(missing), 'train')
  message = str(info.value)
  assert str(missing) in message and 'ADEChallengeData2016' in message
  assert 'does not exist' in message and 'images/' in message


def test_root_is_parent_directory(tree):
  with pytest.raises(ValueError) as info:
    ade20k.ADE20KSource(str(tree.parent), 'train')
  message = str(info.value)
  assert 'parent' in message and str(tree) in message


def test_root_is_inside_the_dataset(tree):
  with pytest.raises(ValueError, match='inside the dataset') as info:
    ade20k.ADE20KSource(str(tree / 'images'), 'val')
  assert str(tree) in str(info.value)


def test_missing_subdirectory(tree):
  shutil.rmtree(tree / 'annotations' / 'validation')
  ade20k.ADE20KSource(str(tree), 'train')  # The other split is unaffected.
  with pytest.raises(ValueError) as info:
    ade20k.ADE20KSource(str(tree), 'val')
  message = str(info.value)
  assert str(tree / 'annotations' / 'validation') in message and 'ADEChallengeData2016' in message


def test_no_images(tree):
  for path in (tree / 'images' / 'validation').iterdir():
    path.unlink()
  with pytest.raises(ValueError, match='no .jpg images') as info:
    ade20k.ADE20KSource(str(tree), 'val')
  assert str(tree / 'images' / 'validation') in str(info.value)


def test_image_without_annotation(tree):
  (tree / 'annotations' / 'training' / 'ADE_train_00000003.png').unlink()
  with pytest.raises(ValueError) as info:
    ade20k.ADE20KSource(str(tree), 'train')
  message = str(info.value).split('Expected layout')[0]
  assert 'ADE_train_00000003.jpg' in message and '1 image(s)' in message
  assert 'ADE_train_00000001' not in message


def test_annotation_without_image(tree):
  for k in (1, 2):
    (tree / 'images' / 'validation' / f'ADE_val_0000000{k}.jpg').unlink()
  with pytest.raises(ValueError) as info:
    ade20k.ADE20KSource(str(tree), 'val')
  message = str(info.value)
  assert 'ADE_val_00000001.png' in message and 'ADE_val_00000002.png' in message
  assert '2 annotation(s)' in message


def test_many_unpaired_files_are_summarised(tmp_path):
  tree = _write_tree(tmp_path, num_train=8, num_val=1)
  for path in (tree / 'annotations' / 'training').iterdir():
    path.unlink()
  with pytest.raises(ValueError, match=r'8 image\(s\)') as info:
    ade20k.ADE20KSource(str(tree), 'train')
  message = str(info.value).split('Expected layout')[0]
  assert '3 more' in message and 'ADE_train_00000005' in message
  assert 'ADE_train_00000006' not in message


def test_mismatched_shapes(tree):
  label_path = tree / 'annotations' / 'training' / 'ADE_train_00000001.png'
  Image.fromarray(np.zeros((30, 20), np.uint8)).save(label_path)
  source = ade20k.ADE20KSource(str(tree), 'train')
  with pytest.raises(ValueError) as info:
    source[0]
  message = str(info.value)
  assert 'ADE_train_00000001.jpg' in message and 'ADE_train_00000001.png' in message
  assert '(48, 64, 3)' in message and '(30, 20)' in message
  source[1]  # Other items still load.


def test_out_of_range_label_value(tree):
  label_path = tree / 'annotations' / 'validation' / 'ADE_val_00000002.png'
  raw = _raw_label(label_path)
  raw[3, 4] = 151
  raw[5, 6] = 255
  Image.fromarray(raw).save(label_path)
  source = ade20k.ADE20KSource(str(tree), 'val')
  with pytest.raises(ValueError) as info:
    source[1]
  message = str(info.value)
  assert str(label_path) in message and '255' in message and '2 pixel(s)' in message


def test_multichannel_label(tree):
  label_path = tree / 'annotations' / 'training' / 'ADE_train_00000002.png'
  raw = _raw_label(label_path)
  Image.fromarray(np.stack([raw] * 3, axis=-1)).save(label_path)
  with pytest.raises(ValueError, match='single-channel') as info:
    ade20k.ADE20KSource(str(tree), 'train')[1]
  assert str(label_path) in str(info.value)


def test_bad_split_and_ignore_index(tree):
  with pytest.raises(ValueError, match='split'):
    ade20k.ADE20KSource(str(tree), 'validation')
  with pytest.raises(ValueError, match='ignore_index'):
    ade20k.ADE20KSource(str(tree), 'train', ignore_index=0)
