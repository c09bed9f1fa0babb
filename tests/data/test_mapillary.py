"""Mapillary Vistas v1.2 on a tiny tree with the release's layout: palette-PNG label decoding."""

import pathlib
import shutil

import numpy as np
import pytest
from PIL import Image

from configs import default
from semseg_jax.data.datasets import files
from semseg_jax.data.datasets import mapillary

# config_v1.2.json's `labels`, written out here on their own: (readable, (r, g, b)); the list
# index is the pixel value of a label PNG.
VISTAS_V12 = [
    ('Bird', (165, 42, 42)), ('Ground Animal', (0, 192, 0)), ('Curb', (196, 196, 196)),
    ('Fence', (190, 153, 153)), ('Guard Rail', (180, 165, 180)), ('Barrier', (90, 120, 150)),
    ('Wall', (102, 102, 156)), ('Bike Lane', (128, 64, 255)),
    ('Crosswalk - Plain', (140, 140, 200)), ('Curb Cut', (170, 170, 170)),
    ('Parking', (250, 170, 160)), ('Pedestrian Area', (96, 96, 96)),
    ('Rail Track', (230, 150, 140)), ('Road', (128, 64, 128)), ('Service Lane', (110, 110, 110)),
    ('Sidewalk', (244, 35, 232)), ('Bridge', (150, 100, 100)), ('Building', (70, 70, 70)),
    ('Tunnel', (150, 120, 90)), ('Person', (220, 20, 60)), ('Bicyclist', (255, 0, 0)),
    ('Motorcyclist', (255, 0, 100)), ('Other Rider', (255, 0, 200)),
    ('Lane Marking - Crosswalk', (200, 128, 128)), ('Lane Marking - General', (255, 255, 255)),
    ('Mountain', (64, 170, 64)), ('Sand', (230, 160, 50)), ('Sky', (70, 130, 180)),
    ('Snow', (190, 255, 255)), ('Terrain', (152, 251, 152)), ('Vegetation', (107, 142, 35)),
    ('Water', (0, 170, 30)), ('Banner', (255, 255, 128)), ('Bench', (250, 0, 30)),
    ('Bike Rack', (100, 140, 180)), ('Billboard', (220, 220, 220)),
    ('Catch Basin', (220, 128, 128)), ('CCTV Camera', (222, 40, 40)),
    ('Fire Hydrant', (100, 170, 30)), ('Junction Box', (40, 40, 40)), ('Mailbox', (33, 33, 33)),
    ('Manhole', (100, 128, 160)), ('Phone Booth', (142, 0, 0)), ('Pothole', (70, 100, 150)),
    ('Street Light', (210, 170, 100)), ('Pole', (153, 153, 153)),
    ('Traffic Sign Frame', (128, 128, 128)), ('Utility Pole', (0, 0, 80)),
    ('Traffic Light', (250, 170, 30)), ('Traffic Sign (Back)', (192, 192, 192)),
    ('Traffic Sign (Front)', (220, 220, 0)), ('Trash Can', (140, 140, 20)),
    ('Bicycle', (119, 11, 32)), ('Boat', (150, 0, 255)), ('Bus', (0, 60, 100)),
    ('Car', (0, 0, 142)), ('Caravan', (0, 0, 90)), ('Motorcycle', (0, 0, 230)),
    ('On Rails', (0, 80, 100)), ('Other Vehicle', (128, 64, 64)), ('Trailer', (0, 0, 110)),
    ('Truck', (0, 0, 70)), ('Wheeled Slow', (0, 0, 192)), ('Car Mount', (32, 32, 32)),
    ('Ego Vehicle', (120, 10, 10)), ('Unlabeled', (0, 0, 0))]
IGNORE = 'ignore'
# Raw label index -> class: 0..64 stay themselves, 65 (Unlabeled) is ignored.
RAW_TO_CLASS = {**{raw: raw for raw in range(65)}, 65: IGNORE}
KEYS = {'training': ('A1b2C3d4E5f6G7h8I9j0Kk', 'zZyYxXwWvVuUtTsSrRqQpP', '_-0123456789abcdefghij'),
        'validation': ('Mm0nN1oO2pP3qQ4rR5sS6t', 'Nn1oO2pP3qQ4rR5sS6tT7u')}


def _vistas_palette() -> list[int]:
  flat = [c for _, colour in VISTAS_V12 for c in colour]
  return flat + [0] * (768 - len(flat))


def write_palette_label(path: pathlib.Path, indices: np.ndarray, palette=None) -> None:
  label = Image.fromarray(indices.astype(np.uint8))  # Mode 'L'; putpalette makes it 'P'.
  label.putpalette(_vistas_palette() if palette is None else palette)
  label.save(path)


def make_vistas_tree(root: pathlib.Path, flat: bool = False) -> pathlib.Path:
  """The example tree: vistas/{training,validation}/images/<key>.jpg with palette-PNG labels in
  v1.2/labels/ (or the flat labels/) holding every index 0..65, plus config_v1.2.json and
  testing/."""
  return pathlib.Path(mapillary.write_example_tree(str(root), _config(None).data, flat=flat))


def _config(root):
  config = default.get_config()
  config.data.name = 'mapillary'
  config.data.root = str(root)
  return config


def _expected(indices: np.ndarray, ignore_index: int) -> np.ndarray:
  out = np.full(indices.shape, -1)
  for raw, cls in RAW_TO_CLASS.items():
    out[indices == raw] = ignore_index if cls == IGNORE else cls
  assert (out >= 0).all()
  return out


def _stored_indices(path: str) -> np.ndarray:
  with Image.open(path) as label:
    assert label.mode == 'P'
    return np.array(label)


@pytest.mark.parametrize('flat', [False, True])
def test_labels_decode_pixel_for_pixel(tmp_path, flat):
  root = make_vistas_tree(tmp_path, flat=flat)
  config = _config(root)
  config.data.ignore_index = 250
  source = mapillary.from_config(config.data, 'train')
  assert len(source) == 3 and source.num_classes == 65 and source.ignore_index == 250
  assert [source.name(i) for i in range(3)] == sorted(KEYS['training'])
  for i in range(len(source)):
    label_path = pathlib.Path(source.label_path(i))
    assert label_path.parent == root / 'training' / ('labels' if flat else 'v1.2/labels')
    assert label_path.name == source.name(i) + '.png'
    assert source.image_path(i) == str(root / 'training' / 'images' / f'{source.name(i)}.jpg')
    item = source[i]
    indices = _stored_indices(str(label_path))
    assert set(np.unique(indices)) == set(range(66))
    assert item['label'].dtype == np.uint8 and item['label'].shape == indices.shape
    np.testing.assert_array_equal(item['label'], _expected(indices, 250))
    np.testing.assert_array_equal(source.read_label(i), item['label'])
    assert item['image'].shape == (*indices.shape, 3) and source.image_size(i) == indices.shape
  val = mapillary.from_config(config.data, 'val')
  assert [val.name(i) for i in range(len(val))] == sorted(KEYS['validation'])


def test_palette_indices_are_read_not_colours(tmp_path):
  root = make_vistas_tree(tmp_path)
  key = KEYS['validation'][0]
  path = root / 'validation' / 'v1.2' / 'labels' / f'{key}.png'
  height, width = _stored_indices(str(path)).shape
  indices = np.arange(height * width).reshape(height, width) % 66
  # Reversed colours: index k shows the colour of 65 - k, so reading colours would go wrong.
  reversed_palette = [c for _, colour in reversed(VISTAS_V12) for c in colour]
  write_palette_label(path, indices, reversed_palette + [0] * (768 - len(reversed_palette)))
  with Image.open(path) as label:
    assert label.convert('RGB').getpixel((0, 0)) == (0, 0, 0)  # Index 0 shown as Unlabeled.
  label = mapillary.from_config(_config(root).data, 'val')[0]['label']
  np.testing.assert_array_equal(label, _expected(indices, 255))
  assert label[0, 0] == 0 and label.flat[65] == 255  # Index 65 -> ignored.


def test_v12_labels_win_over_flat_labels(tmp_path):
  root = make_vistas_tree(tmp_path)
  shutil.copytree(root / 'training' / 'v1.2' / 'labels', root / 'training' / 'labels')
  source = mapillary.from_config(_config(root).data, 'train')
  assert all('/v1.2/labels/' in source.label_path(i) for i in range(len(source)))


def test_class_metadata():
  assert mapillary.NUM_CLASSES == 65 and len(mapillary.CLASS_NAMES) == 65
  assert mapillary.CLASS_NAMES[:3] == ('Bird', 'Ground Animal', 'Curb')
  assert mapillary.CLASS_NAMES[13] == 'Road' and mapillary.CLASS_NAMES[55] == 'Car'
  assert mapillary.CLASS_NAMES[-1] == 'Ego Vehicle' and 'Unlabeled' not in mapillary.CLASS_NAMES
  assert mapillary.PALETTE.shape == (65, 3) and mapillary.PALETTE.dtype == np.uint8
  np.testing.assert_array_equal(mapillary.PALETTE[0], [165, 42, 42])
  np.testing.assert_array_equal(mapillary.PALETTE[19], [220, 20, 60])  # Person
  np.testing.assert_array_equal(mapillary.PALETTE[64], [120, 10, 10])  # Ego Vehicle
  assert list(mapillary.CLASS_NAMES) == [name for name, _ in VISTAS_V12[:65]]
  np.testing.assert_array_equal(mapillary.PALETTE, [colour for _, colour in VISTAS_V12[:65]])


def test_values_above_unlabeled_name_the_file_and_values(tmp_path):
  root = make_vistas_tree(tmp_path)
  path = root / 'validation' / 'v1.2' / 'labels' / f'{KEYS["validation"][0]}.png'
  indices = _stored_indices(str(path))
  indices[0, :3] = 66
  indices[1, 0] = 255
  write_palette_label(path, indices)
  source = mapillary.from_config(_config(root).data, 'val')
  with pytest.raises(files.DataError) as info:
    source[0]
  message = str(info.value)
  assert str(path) in message and '66 (3 px)' in message and '255 (1 px)' in message


def test_rgb_label_is_an_error_naming_the_file(tmp_path):
  root = make_vistas_tree(tmp_path)
  path = root / 'validation' / 'v1.2' / 'labels' / f'{KEYS["validation"][0]}.png'
  with Image.open(path) as label:
    label.convert('RGB').save(path)
  with pytest.raises(files.DataError, match=str(path)):
    mapillary.from_config(_config(root).data, 'val')[0]


def test_ignore_index_must_not_be_a_class(tmp_path):
  root = make_vistas_tree(tmp_path)
  config = _config(root)
  config.data.ignore_index = 64
  with pytest.raises(ValueError, match='ignore_index=64'):
    mapillary.from_config(config.data, 'val')
  config.data.ignore_index = 65  # Allowed: Unlabeled keeps its own index.
  label = mapillary.from_config(config.data, 'val')[0]['label']
  assert set(np.unique(label)) == set(range(66))


def test_layout_errors_name_the_expected_paths(tmp_path):
  root = make_vistas_tree(tmp_path)
  with pytest.raises(ValueError, match='unknown split'):
    mapillary.from_config(_config(root).data, 'test')
  with pytest.raises(ValueError, match=f'root should be {root}'):
    mapillary.from_config(_config(tmp_path).data, 'train')
  with pytest.raises(ValueError, match='no root given'):
    mapillary.from_config(default.get_config().data, 'train')  # root unset.
  (root / 'validation' / 'v1.2' / 'labels' / f'{KEYS["validation"][0]}.png').unlink()
  with pytest.raises(ValueError, match=f'1 image.*have no label.*{KEYS["validation"][0]}'):
    mapillary.from_config(_config(root).data, 'val')
  shutil.rmtree(root / 'validation' / 'v1.2' / 'labels')
  with pytest.raises(ValueError) as info:
    mapillary.from_config(_config(root).data, 'val')
  message = str(info.value)
  assert str(root / 'validation' / 'v1.2' / 'labels') in message
  assert str(root / 'validation' / 'labels') in message
  shutil.rmtree(root / 'training' / 'images')
  with pytest.raises(ValueError, match=str(root / 'training' / 'images')):
    mapillary.from_config(_config(root).data, 'train')
