"""COCO-Stuff 164k and 10k on tiny trees with the release layouts: raw and converted labels."""

import pathlib

import numpy as np
import pytest
import scipy.io
from PIL import Image

from configs import default
from semseg_jax.data.datasets import coco_stuff
from semseg_jax.data.datasets import files

# Raw stuffthingmaps value (labels.txt id - 1) -> train id, as mmsegmentation's
# tools/dataset_converters/coco_stuff164k.py writes it (clsID_to_trID); written out on its own.
RAW_TO_TRAIN_ID = {
    0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 7, 8: 8, 9: 9, 10: 10, 12: 11, 13: 12, 14: 13,
    15: 14, 16: 15, 17: 16, 18: 17, 19: 18, 20: 19, 21: 20, 22: 21, 23: 22, 24: 23, 26: 24, 27: 25,
    30: 26, 31: 27, 32: 28, 33: 29, 34: 30, 35: 31, 36: 32, 37: 33, 38: 34, 39: 35, 40: 36, 41: 37,
    42: 38, 43: 39, 45: 40, 46: 41, 47: 42, 48: 43, 49: 44, 50: 45, 51: 46, 52: 47, 53: 48, 54: 49,
    55: 50, 56: 51, 57: 52, 58: 53, 59: 54, 60: 55, 61: 56, 62: 57, 63: 58, 64: 59, 66: 60, 69: 61,
    71: 62, 72: 63, 73: 64, 74: 65, 75: 66, 76: 67, 77: 68, 78: 69, 79: 70, 80: 71, 81: 72, 83: 73,
    84: 74, 85: 75, 86: 76, 87: 77, 88: 78, 89: 79, 91: 80, 92: 81, 93: 82, 94: 83, 95: 84, 96: 85,
    97: 86, 98: 87, 99: 88, 100: 89, 101: 90, 102: 91, 103: 92, 104: 93, 105: 94, 106: 95, 107: 96,
    108: 97, 109: 98, 110: 99, 111: 100, 112: 101, 113: 102, 114: 103, 115: 104, 116: 105, 117: 106,
    118: 107, 119: 108, 120: 109, 121: 110, 122: 111, 123: 112, 124: 113, 125: 114, 126: 115,
    127: 116, 128: 117, 129: 118, 130: 119, 131: 120, 132: 121, 133: 122, 134: 123, 135: 124,
    136: 125, 137: 126, 138: 127, 139: 128, 140: 129, 141: 130, 142: 131, 143: 132, 144: 133,
    145: 134, 146: 135, 147: 136, 148: 137, 149: 138, 150: 139, 151: 140, 152: 141, 153: 142,
    154: 143, 155: 144, 156: 145, 157: 146, 158: 147, 159: 148, 160: 149, 161: 150, 162: 151,
    163: 152, 164: 153, 165: 154, 166: 155, 167: 156, 168: 157, 169: 158, 170: 159, 171: 160,
    172: 161, 173: 162, 174: 163, 175: 164, 176: 165, 177: 166, 178: 167, 179: 168, 180: 169,
    181: 170, 255: 255}
# The 11 thing ids without annotations (street sign, hat, shoe, eye glasses, plate, mirror,
# window, desk, door, blender, hair brush), as raw PNG values.
UNUSED_RAW_IDS = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)
RAW_VALUES = np.array(sorted(RAW_TO_TRAIN_ID), np.uint8)  # 171 used ids and 255.
SIZE = (12, 16)  # Of the labels made here: 192 pixels, room for every raw value.

SPLITS_164K = {'train2017': ('000000000009', '000000000025'),
               'val2017': ('000000000139', '000000000285')}
SPLITS_10K = {'train2014': ('COCO_train2014_000000000077', 'COCO_train2014_000000000109'),
              'test2014': ('COCO_train2014_000000000250', 'COCO_train2014_000000000307')}


def _to_train_ids(raw: np.ndarray) -> np.ndarray:
  return np.vectorize(RAW_TO_TRAIN_ID.__getitem__)(raw).astype(np.uint8)


def _mat_to_train_ids(mat_ids: np.ndarray, unlabeled: int) -> np.ndarray:
  """10k labels.txt ids (1..182) -> train ids: id s is raw 164k value s - 1; 0 -> unlabeled."""
  return np.vectorize(lambda s: unlabeled if s == 0 else RAW_TO_TRAIN_ID[s - 1])(mat_ids)


def make_coco164k_tree(root: pathlib.Path, train_ids: bool = False, seed: int = 0
                       ) -> pathlib.Path:
  """The 164k example tree: coco/images/{train2017,val2017}/<id>.jpg with raw stuffthingmaps
  annotations/<split>/<id>.png (every used raw id and 255 in each; 'L' PNGs, the val one then
  re-saved as a palette PNG with random colours) and, with `train_ids`, mmseg's
  <id>_labelTrainIds.png next to them."""
  base = pathlib.Path(coco_stuff.write_example_tree(str(root), _config(None, '164k').data,
                                                    train_ids=train_ids, seed=seed))
  rng = np.random.default_rng(seed)
  for stem in SPLITS_164K['val2017']:  # Indices of a palette image whose colours mean nothing.
    path = base / 'annotations' / 'val2017' / f'{stem}.png'
    raw = np.array(Image.open(path))
    image = Image.frombytes('P', (raw.shape[1], raw.shape[0]), raw.tobytes())
    image.putpalette(rng.integers(0, 256, 768, dtype=np.uint8).tobytes())
    image.save(path)
  return base


def make_coco10k_tree(root: pathlib.Path, converted: bool = True) -> pathlib.Path:
  """The 10k example tree: the cocostuff-10k-v1.1 release (images/<name>.jpg,
  annotations/<name>.mat with S holding 0 = unlabeled and labels.txt ids 1..182,
  imageLists/{train,test}.txt) and, with `converted`, mmseg's conversion beside it:
  images/{train2014,test2014}/<name>.jpg and annotations/{train2014,test2014}/
  <name>_labelTrainIds.png (0 unlabeled, train id + 1), plus a few 255 pixels (the last three)."""
  return pathlib.Path(coco_stuff.write_example_tree(
      str(root), _config(None, '10k').data, splits=('train', 'test'), converted=converted))


def _config(root, variant: str = '', ignore_index: int = 255):
  config = default.get_config()
  config.data.name = 'coco_stuff'
  config.data.root = str(root)
  config.data.variant = variant
  config.data.ignore_index = ignore_index
  return config


def _expected_from_raw(raw: np.ndarray, ignore_index: int) -> np.ndarray:
  out = _to_train_ids(raw).astype(np.int64)
  out[raw == 255] = ignore_index
  return out


@pytest.mark.parametrize('variant', ['', '164k'])
def test_raw_164k_labels_decode_pixel_for_pixel(tmp_path, variant):
  root = make_coco164k_tree(tmp_path)
  source = coco_stuff.from_config(_config(root, variant, ignore_index=250).data, 'train')
  assert len(source) == 2 and source.num_classes == 171 and source.ignore_index == 250
  assert [source.name(i) for i in range(2)] == ['000000000009', '000000000025']
  assert source.dataset == 'COCO-Stuff 164k'
  for i in range(len(source)):
    path = source.label_path(i)
    assert path == str(root / 'annotations' / 'train2017' / f'{source.name(i)}.png')
    assert source.image_path(i) == str(root / 'images' / 'train2017' / f'{source.name(i)}.jpg')
    raw = np.array(Image.open(path))
    assert set(np.unique(raw)) == set(RAW_VALUES.tolist())
    item = source[i]
    np.testing.assert_array_equal(item['label'], _expected_from_raw(raw, 250))
    assert item['label'].dtype == np.uint8 and item['image'].shape == (*raw.shape, 3)
    assert source.image_size(i) == raw.shape
  val = coco_stuff.from_config(_config(root, variant).data, 'val')  # Palette ('P') PNGs.
  assert [val.name(i) for i in range(len(val))] == ['000000000139', '000000000285']
  for i in range(len(val)):
    with Image.open(val.label_path(i)) as image:
      assert image.mode == 'P'
      raw = np.array(image)  # The indices, not their colours.
    assert set(np.unique(raw)) == set(RAW_VALUES.tolist())
    np.testing.assert_array_equal(val[i]['label'], _expected_from_raw(raw, 255))


def test_converted_164k_labels_are_read_as_train_ids(tmp_path):
  root = make_coco164k_tree(tmp_path, train_ids=True)
  source = coco_stuff.from_config(_config(root, '164k', ignore_index=200).data, 'train')
  assert len(source) == 2
  for i in range(len(source)):
    path = source.label_path(i)
    assert path.endswith(f'{source.name(i)}_labelTrainIds.png')
    raw = np.array(Image.open(path.replace('_labelTrainIds.png', '.png')))
    np.testing.assert_array_equal(source[i]['label'], _expected_from_raw(raw, 200))
  assert coco_stuff.from_config(_config(root).data, 'val').label_path(0).endswith(
      '000000000139_labelTrainIds.png')


def test_partial_conversion_falls_back_to_raw_pngs(tmp_path):
  root = make_coco164k_tree(tmp_path, train_ids=True)
  (root / 'annotations' / 'train2017' / '000000000025_labelTrainIds.png').unlink()
  # The remaining 000000000009_labelTrainIds.png is not taken for a label of a missing image.
  source = coco_stuff.from_config(_config(root).data, 'train')
  assert [source.name(i) for i in range(len(source))] == ['000000000009', '000000000025']
  for i in range(len(source)):
    assert source.label_path(i).endswith(f'{source.name(i)}.png')
    raw = np.array(Image.open(source.label_path(i)))
    np.testing.assert_array_equal(source[i]['label'], _expected_from_raw(raw, 255))


def test_unused_thing_ids_and_unknown_values_are_data_errors(tmp_path):
  root = make_coco164k_tree(tmp_path)
  source = coco_stuff.from_config(_config(root).data, 'val')
  path = root / 'annotations' / 'val2017' / '000000000139.png'
  for bad in UNUSED_RAW_IDS + (182, 254):
    raw = np.zeros(SIZE, np.uint8)
    raw[3, :2] = bad
    Image.fromarray(raw).save(path)
    with pytest.raises(files.DataError) as info:
      source[0]
    message = str(info.value)
    assert str(path) in message and f'{bad} (2 px)' in message, message
  # A converted label holds 0..170 and 255 only.
  root = make_coco164k_tree(tmp_path / 'converted', train_ids=True)
  path = root / 'annotations' / 'val2017' / '000000000139_labelTrainIds.png'
  raw = np.zeros(SIZE, np.uint8)
  raw[0, 0] = 171
  Image.fromarray(raw).save(path)
  with pytest.raises(files.DataError, match=f'{path}.*171 \\(1 px\\)'):
    coco_stuff.from_config(_config(root).data, 'val')[0]


def test_10k_labels_decode_pixel_for_pixel(tmp_path):
  root = make_coco10k_tree(tmp_path)
  train = coco_stuff.from_config(_config(root, '10k', ignore_index=250).data, 'train')
  assert train.dataset == 'COCO-Stuff 10k' and train.num_classes == 171
  assert [train.name(i) for i in range(len(train))] == list(SPLITS_10K['train2014'])
  for split in ('train', 'test', 'val'):  # 'val' reads the release's test split.
    source = coco_stuff.from_config(_config(root, '10k', ignore_index=250).data, split)
    directory = 'train2014' if split == 'train' else 'test2014'
    assert [source.name(i) for i in range(len(source))] == list(SPLITS_10K[directory])
    for i in range(len(source)):
      path = pathlib.Path(source.label_path(i))
      assert path == root / 'annotations' / directory / f'{source.name(i)}_labelTrainIds.png'
      stored = np.array(Image.open(path))
      assert stored.min() == 0 and stored.max() == 255 and 171 in stored
      mat_ids = scipy.io.loadmat(root / 'annotations' / f'{source.name(i)}.mat')['S']
      # Same classes as 164k: labels.txt id s is raw 164k value s - 1.
      expected = _mat_to_train_ids(mat_ids, 250)
      expected[-1, -3:] = 250  # The stored 255s.
      label = source[i]['label']
      np.testing.assert_array_equal(label, expected)
      np.testing.assert_array_equal(label, np.where((stored == 0) | (stored == 255), 250,
                                                    stored.astype(np.int64) - 1))


def test_10k_bad_label_value_names_the_file(tmp_path):
  root = make_coco10k_tree(tmp_path)
  path = root / 'annotations' / 'test2014' / f'{SPLITS_10K["test2014"][0]}_labelTrainIds.png'
  raw = np.ones(SIZE, np.uint8)
  raw[0, :4] = 172
  Image.fromarray(raw).save(path)
  with pytest.raises(files.DataError, match=f'{path}.*172 \\(4 px\\)'):
    coco_stuff.from_config(_config(root, '10k').data, 'test')[0]


def test_10k_without_conversion_explains_it(tmp_path):
  root = make_coco10k_tree(tmp_path, converted=False)
  with pytest.raises(ValueError) as info:
    coco_stuff.from_config(_config(root, '10k').data, 'train')
  message = str(info.value)
  assert str(root / 'annotations' / 'train2014') in message
  assert '.mat' in message and '_labelTrainIds.png' in message and 'coco_stuff10k.py' in message
  (root / 'images' / 'test2014').mkdir()  # Images copied, annotations not converted.
  with pytest.raises(ValueError) as info:
    coco_stuff.from_config(_config(root, '10k').data, 'val')
  message = str(info.value)
  assert f'needs {root / "annotations" / "test2014"}, which does not exist' in message
  assert 'coco_stuff10k.py' in message


@pytest.mark.parametrize('variant', ['1k', '164K', 'full', '10k '])
def test_bad_variant_names_the_field_and_choices(tmp_path, variant):
  root = make_coco164k_tree(tmp_path)
  data = _config(root, variant).data
  for call in (lambda: coco_stuff.from_config(data, 'train'),
               lambda: coco_stuff.class_names_and_palette(data)):
    with pytest.raises(ValueError) as info:
      call()
    message = str(info.value)
    assert f'config.data.variant={variant!r}' in message
    assert "'164k'" in message and "'10k'" in message


def test_class_metadata():
  names, palette = coco_stuff.CLASS_NAMES, coco_stuff.PALETTE
  assert len(names) == 171 == coco_stuff.NUM_CLASSES and palette.shape == (171, 3)
  assert palette.dtype == np.uint8 and len(set(names)) == 171
  assert names[:3] == ('person', 'bicycle', 'car') and names[-1] == 'wood'
  assert names[80] == 'banner' and names[170] == 'wood'
  # Raw 164k value -> name in labels.txt (minus one), through the train ids.
  for raw, name in {0: 'person', 12: 'stop sign', 26: 'backpack', 66: 'dining table',
                    83: 'book', 91: 'banner', 181: 'wood'}.items():
    assert names[RAW_TO_TRAIN_ID[raw]] == name
  np.testing.assert_array_equal(palette[0], [0, 192, 64])
  np.testing.assert_array_equal(palette[2], [0, 64, 96])
  np.testing.assert_array_equal(palette[170], [64, 64, 0])
  assert coco_stuff.RAW_ID_TO_CLASS == {k: v for k, v in RAW_TO_TRAIN_ID.items() if k != 255}
  for variant in ('', '164k', '10k'):
    got_names, got_palette = coco_stuff.class_names_and_palette(_config('unused', variant).data)
    assert got_names == names and got_palette is palette


def test_layout_errors_name_the_expected_paths(tmp_path):
  root = make_coco164k_tree(tmp_path)
  with pytest.raises(ValueError, match="unknown split 'test'"):
    coco_stuff.from_config(_config(root).data, 'test')
  with pytest.raises(ValueError, match='ignore_index=100'):
    coco_stuff.from_config(_config(root, ignore_index=100).data, 'train')
  with pytest.raises(ValueError, match=f'root should be {root}'):
    coco_stuff.from_config(_config(tmp_path).data, 'train')
  with pytest.raises(ValueError, match="images/train2017 of the COCO-Stuff 164k.*variant='164k'"):
    coco_stuff.from_config(_config(root, '10k').data, 'train')
  (root / 'annotations' / 'val2017' / '000000000139.png').unlink()
  with pytest.raises(ValueError, match='1 image.*have no label.*000000000139.jpg'):
    coco_stuff.from_config(_config(root).data, 'val')
  for stem in ('000000000139', '000000000285'):
    (root / 'images' / 'val2017' / f'{stem}.jpg').unlink()
  with pytest.raises(ValueError, match=f'no \\*.jpg images in {root / "images" / "val2017"}'):
    coco_stuff.from_config(_config(root).data, 'val')
  (root / 'images' / 'val2017').rmdir()
  with pytest.raises(ValueError, match=str(root / 'images' / 'val2017')):
    coco_stuff.from_config(_config(root).data, 'val')
  root10k = make_coco10k_tree(tmp_path / 'ten')
  with pytest.raises(ValueError, match="variant='10k'"):
    coco_stuff.from_config(_config(root10k).data, 'train')
