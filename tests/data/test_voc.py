"""Pascal VOC 2012 and SBD's train_aug on a tiny VOCdevkit tree with the release's encodings."""

import pathlib
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
from PIL import Image

from configs import default
from semseg_jax.data.datasets import files
from semseg_jax.data.datasets import voc

SIZE = (12, 16)  # (H, W) of the labels made here.
VOC_TRAIN = ('2007_000032', '2007_000039', '2008_000002')  # 2008_000002 is not in SBD.
VOC_VAL = ('2007_000033', '2009_000001')  # 2007_000033 is in SBD train.
SBD_TRAIN = ('2007_000032', '2007_000033', '2008_000100', '2010_000300')
SBD_VAL = ('2007_000039', '2008_000200')
# (SBD train + SBD val + VOC train) - VOC val, written out by hand.
TRAIN_AUG = ('2007_000032', '2007_000039', '2008_000002', '2008_000100', '2008_000200',
             '2010_000300')
# Stored label value -> class, written out here on its own: 0..20 are the classes, 255 void.
RAW_TO_CLASS = {**{v: v for v in range(21)}, 255: 'ignore'}


def voc_colour_map(n: int = 256) -> list[tuple[int, int, int]]:
  """The VOCdevkit's VOClabelcolormap (bits of the index interleaved into r, g, b)."""
  colours = []
  for i in range(n):
    r = g = b = 0
    c = i
    for j in range(8):
      r |= (c & 1) << (7 - j)
      g |= ((c >> 1) & 1) << (7 - j)
      b |= ((c >> 2) & 1) << (7 - j)
      c >>= 3
    colours.append((r, g, b))
  return colours


def _write_list(path: pathlib.Path, ids) -> None:
  path.write_text(''.join(i + '\n' for i in ids))


def make_voc_tree(root: pathlib.Path) -> pathlib.Path:
  """The example VOCdevkit, SBD not converted: VOC2012 (JPEGs of every id, palette
  SegmentationClass PNGs of the VOC train and val ids holding every value 0..20 and 255, split
  lists) and VOCaug/dataset (SBD cls/*.mat holding every class 0..20, train.txt, val.txt)."""
  return pathlib.Path(voc.write_example_tree(str(root), _config(None).data))


def _convert(devkit: pathlib.Path) -> int:
  return voc.convert_sbd(str(devkit / 'VOCaug' / 'dataset'), str(devkit / 'VOC2012'))


def _config(root, ignore_index=255):
  config = default.get_config()
  config.data.name = 'voc'
  config.data.root = str(root)
  config.data.ignore_index = ignore_index
  return config


def _expected(raw: np.ndarray, ignore_index: int) -> np.ndarray:
  out = np.full(raw.shape, -1)
  for value, cls in RAW_TO_CLASS.items():
    out[raw == value] = ignore_index if cls == 'ignore' else cls
  assert (out >= 0).all()
  return out


def _mat_segmentation(path: pathlib.Path) -> np.ndarray:
  """How mmseg and torchvision read a cls/*.mat."""
  return scipy.io.loadmat(path)['GTcls'][0]['Segmentation'][0]


def test_savemat_round_trips_like_sbd_files(tmp_path):
  segmentation = np.arange(SIZE[0] * SIZE[1], dtype=np.uint8).reshape(SIZE) % 21
  path = tmp_path / 'x.mat'
  voc.save_sbd_mat(segmentation, str(path))
  record = scipy.io.loadmat(path)['GTcls']
  assert record.shape == (1, 1)
  assert record.dtype.names == ('Boundaries', 'Segmentation', 'CategoriesPresent')
  assert _mat_segmentation(path).dtype == np.uint8
  np.testing.assert_array_equal(_mat_segmentation(path), segmentation)
  as_struct = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)['GTcls']
  np.testing.assert_array_equal(as_struct.Segmentation, segmentation)
  np.testing.assert_array_equal(voc.read_sbd_segmentation(str(path)), segmentation)
  scipy.io.savemat(path, {'GTcls': {'Segmentation': segmentation.astype(float)}})
  np.testing.assert_array_equal(voc.read_sbd_segmentation(str(path)), segmentation)


def test_convert_sbd_then_train_aug_pixel_for_pixel(tmp_path):
  devkit = make_voc_tree(tmp_path)
  voc2012 = devkit / 'VOC2012'
  assert _convert(devkit) == len(TRAIN_AUG)
  listed = (voc2012 / 'ImageSets' / 'Segmentation' / 'train_aug.txt').read_text().split('\n')
  assert listed == list(TRAIN_AUG) + ['']
  aug = voc2012 / 'SegmentationClassAug'
  # Every .mat (the val id 2007_000033 too, as mmseg does) and the VOC train id SBD lacks.
  assert sorted(p.stem for p in aug.iterdir()) == sorted(SBD_TRAIN + SBD_VAL + ('2008_000002',))
  for path in aug.iterdir():
    with Image.open(path) as image:
      assert image.mode == 'L'
  source = voc.from_config(_config(devkit, ignore_index=250).data, 'train_aug')
  assert len(source) == 6 and source.num_classes == 21
  assert [source.name(i) for i in range(len(source))] == list(TRAIN_AUG)
  for i, name in enumerate(TRAIN_AUG):
    item = source[i]
    if name in VOC_TRAIN:  # VOC's own mask (with borders), also where SBD has one.
      assert source.label_path(i) == str(voc2012 / 'SegmentationClass' / f'{name}.png')
      raw = np.array(Image.open(voc2012 / 'SegmentationClass' / f'{name}.png'))
      assert (raw == 255).any()
    else:  # SBD's mask.
      assert source.label_path(i) == str(aug / f'{name}.png')
      raw = _mat_segmentation(devkit / 'VOCaug' / 'dataset' / 'cls' / f'{name}.mat')
    np.testing.assert_array_equal(item['label'], _expected(raw, 250))
    assert item['image'].shape == (*raw.shape, 3) and source.image_size(i) == raw.shape


def test_plain_splits_read_palette_indices(tmp_path):
  devkit = make_voc_tree(tmp_path)
  config = _config(devkit, ignore_index=254)
  sizes = {'train': VOC_TRAIN, 'val': VOC_VAL, 'trainval': tuple(sorted(VOC_TRAIN + VOC_VAL))}
  for split, ids in sizes.items():
    source = voc.from_config(config.data, split)
    assert [source.name(i) for i in range(len(source))] == list(ids)
    for i, name in enumerate(ids):
      path = devkit / 'VOC2012' / 'SegmentationClass' / f'{name}.png'
      with Image.open(path) as image:
        raw = np.array(image)
        y, x = np.argwhere(raw == 255)[0]  # A border pixel, drawn in the void colour.
        assert image.mode == 'P' and image.convert('RGB').getpixel((int(x), int(y))) == (
            224, 224, 192)
      assert set(np.unique(raw)) == set(range(21)) | {255}
      assert source.label_path(i) == str(path)
      np.testing.assert_array_equal(source[i]['label'], _expected(raw, 254))


def test_train_aug_ids_from_mmseg_list_or_computed(tmp_path):
  devkit = make_voc_tree(tmp_path)
  _convert(devkit)
  lists = devkit / 'VOC2012' / 'ImageSets' / 'Segmentation'
  aug = devkit / 'VOC2012' / 'SegmentationClassAug'
  # mmseg's converter: trainaug.txt in set order, no Aug mask for VOC train ids SBD lacks.
  (lists / 'train_aug.txt').unlink()
  (aug / '2008_000002.png').unlink()
  _write_list(lists / 'trainaug.txt', TRAIN_AUG[::-1])
  config = _config(devkit)
  source = voc.from_config(config.data, 'train_aug')
  assert [source.name(i) for i in range(len(source))] == list(TRAIN_AUG)
  fallback = TRAIN_AUG.index('2008_000002')
  assert source.label_path(fallback) == str(
      devkit / 'VOC2012' / 'SegmentationClass' / '2008_000002.png')
  source[fallback]
  (lists / 'trainaug.txt').unlink()  # Computed: (Aug stems + train.txt) - val.txt.
  source = voc.from_config(config.data, 'train_aug')
  assert [source.name(i) for i in range(len(source))] == list(TRAIN_AUG)


def test_train_aug_rejects_val_ids_and_missing_labels(tmp_path):
  devkit = make_voc_tree(tmp_path)
  _convert(devkit)
  lists = devkit / 'VOC2012' / 'ImageSets' / 'Segmentation'
  config = _config(devkit)
  _write_list(lists / 'train_aug.txt', TRAIN_AUG + ('2007_000033',))
  with pytest.raises(ValueError, match=r'1 id.*train_aug\.txt are in .*val\.txt.*2007_000033'):
    voc.from_config(config.data, 'train_aug')
  _write_list(lists / 'train_aug.txt', TRAIN_AUG + ('2011_000001',))
  with pytest.raises(ValueError, match=r'neither .*SegmentationClassAug/2011_000001\.png'):
    voc.from_config(config.data, 'train_aug')


def test_convert_sbd_errors_name_files(tmp_path):
  devkit = make_voc_tree(tmp_path)
  cls_dir = devkit / 'VOCaug' / 'dataset' / 'cls'
  scipy.io.savemat(cls_dir / '2008_000100.mat', {'GTinst': {'Segmentation': np.zeros(SIZE)}})
  with pytest.raises(ValueError, match=r'2008_000100\.mat: has no GTcls'):
    _convert(devkit)
  scipy.io.savemat(cls_dir / '2008_000100.mat', {'GTcls': {'Boundaries': np.zeros(3)}})
  with pytest.raises(ValueError, match=r'2008_000100\.mat: has no GTcls\.Segmentation'):
    _convert(devkit)
  segmentation = np.zeros(SIZE, np.uint8)
  segmentation[0, :2] = 21
  voc.save_sbd_mat(segmentation, str(cls_dir / '2008_000100.mat'))
  with pytest.raises(files.DataError, match=r'2008_000100\.mat: label values 21 \(2 px\)'):
    _convert(devkit)
  assert not (devkit / 'VOC2012' / 'ImageSets' / 'Segmentation' / 'train_aug.txt').exists()
  (cls_dir / '2008_000100.mat').unlink()
  with pytest.raises(ValueError, match=r'1 id.*have no .*cls/<id>\.mat: 2008_000100'):
    _convert(devkit)


def test_bad_label_values_name_the_file_and_values(tmp_path):
  devkit = make_voc_tree(tmp_path)
  path = devkit / 'VOC2012' / 'SegmentationClass' / '2009_000001.png'
  raw = np.array(Image.open(path))
  raw[0, :3] = 21
  raw[1, 0] = 254
  voc.save_palette_png(raw, str(path))
  source = voc.from_config(_config(devkit).data, 'val')
  with pytest.raises(files.DataError) as info:
    source[1]
  message = str(info.value)
  assert str(path) in message and '21 (3 px)' in message and '254 (1 px)' in message
  source[0]


def test_layout_errors_name_the_expected_paths(tmp_path):
  devkit = make_voc_tree(tmp_path)
  voc2012 = devkit / 'VOC2012'
  config = _config(devkit)
  with pytest.raises(ValueError, match='unknown split'):
    voc.from_config(config.data, 'test')
  with pytest.raises(ValueError, match=f'needs {voc2012 / "SegmentationClassAug"}'):
    voc.from_config(config.data, 'train_aug')
  with pytest.raises(ValueError, match='root should be'):
    voc.from_config(_config(tmp_path).data, 'train')
  with pytest.raises(ValueError, match='root should be the VOCdevkit'):
    voc.from_config(_config(voc2012).data, 'train')
  (voc2012 / 'ImageSets' / 'Segmentation' / 'trainval.txt').unlink()
  with pytest.raises(ValueError, match=f'split list {voc2012}/ImageSets/Segmentation/trainval'):
    voc.from_config(config.data, 'trainval')
  (voc2012 / 'JPEGImages' / '2007_000039.jpg').unlink()
  with pytest.raises(ValueError, match=r'1 image.*train\.txt do not exist.*2007_000039\.jpg'):
    voc.from_config(config.data, 'train')
  (voc2012 / 'SegmentationClass' / '2009_000001.png').unlink()
  with pytest.raises(ValueError, match=r'1 label.*val\.txt do not exist.*2009_000001\.png'):
    voc.from_config(config.data, 'val')


def test_class_metadata():
  assert len(voc.CLASS_NAMES) == voc.NUM_CLASSES == 21
  assert voc.CLASS_NAMES[0] == 'background' and voc.CLASS_NAMES[15] == 'person'
  assert voc.CLASS_NAMES[-1] == 'tvmonitor'
  assert voc.PALETTE.shape == (21, 3) and voc.PALETTE.dtype == np.uint8
  np.testing.assert_array_equal(voc.PALETTE, voc_colour_map(21))
  np.testing.assert_array_equal(voc.PALETTE[15], [192, 128, 128])  # person
  assert voc_colour_map()[255] == (224, 224, 192)  # void
  assert voc.colour_map() == voc_colour_map()  # What the example tree's PNGs carry.


def test_command_line(tmp_path):
  devkit = make_voc_tree(tmp_path)
  repo = pathlib.Path(__file__).resolve().parents[2]
  result = subprocess.run(
      [sys.executable, '-m', 'semseg_jax.data.datasets.voc',
       f'--sbd={devkit / "VOCaug" / "dataset"}', f'--voc={devkit / "VOC2012"}'],
      cwd=repo, capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stderr
  assert 'Wrote 6 ids' in result.stdout and 'train_aug.txt' in result.stdout
  assert 'Wrote 6 masks' in result.stdout and '1 from' in result.stdout
  source = voc.from_config(_config(devkit).data, 'train_aug')
  assert [source.name(i) for i in range(len(source))] == list(TRAIN_AUG)
