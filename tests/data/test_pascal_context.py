"""Pascal Context on a tiny VOCdevkit tree: both variants, and the Detail json converter."""

import json
import pathlib
import re
import sys

import numpy as np
import pytest
from PIL import Image

from configs import default
from semseg_jax.data.datasets import files
from semseg_jax.data.datasets import pascal_context

# PASCAL-in-Detail category_id -> (value in mmseg's SegmentationClassContext PNG, class name),
# written out here on its own from the mmseg converter's sorted `_mapping` and its 60 classes.
DETAIL_TO_CONTEXT = {
    0: (0, 'background'), 2: (1, 'aeroplane'), 9: (2, 'bag'), 18: (3, 'bed'),
    19: (4, 'bedclothes'), 22: (5, 'bench'), 23: (6, 'bicycle'), 25: (7, 'bird'), 31: (8, 'boat'),
    33: (9, 'book'), 34: (10, 'bottle'), 44: (11, 'building'), 45: (12, 'bus'),
    46: (13, 'cabinet'), 59: (14, 'car'), 65: (15, 'cat'), 68: (16, 'ceiling'), 72: (17, 'chair'),
    80: (18, 'cloth'), 85: (19, 'computer'), 98: (20, 'cow'), 104: (21, 'cup'),
    105: (22, 'curtain'), 113: (23, 'dog'), 115: (24, 'door'), 144: (25, 'fence'),
    158: (26, 'floor'), 159: (27, 'flower'), 162: (28, 'food'), 187: (29, 'grass'),
    189: (30, 'ground'), 207: (31, 'horse'), 220: (32, 'keyboard'), 232: (33, 'light'),
    258: (34, 'motorbike'), 259: (35, 'mountain'), 260: (36, 'mouse'), 284: (37, 'person'),
    295: (38, 'plate'), 296: (39, 'platform'), 308: (40, 'pottedplant'), 324: (41, 'road'),
    326: (42, 'rock'), 347: (43, 'sheep'), 349: (44, 'shelves'), 354: (45, 'sidewalk'),
    355: (46, 'sign'), 360: (47, 'sky'), 366: (48, 'snow'), 368: (49, 'sofa'),
    397: (50, 'table'), 415: (51, 'track'), 416: (52, 'train'), 420: (53, 'tree'),
    424: (54, 'truck'), 427: (55, 'tvmonitor'), 440: (56, 'wall'), 445: (57, 'water'),
    454: (58, 'window'), 458: (59, 'wood')}
IGNORE = 255
# Stored PNG value -> class, per variant: '60' keeps background as class 0; '59' ignores it
# and shifts 1..59 down by one (mmseg's reduce_zero_label). 255 is ignored in both.
EXPECTED = {
    '60': {**{v: v for v in range(60)}, 255: IGNORE},
    '59': {0: IGNORE, **{v: v - 1 for v in range(1, 60)}, 255: IGNORE},
}
SIZE = (12, 16)  # Of the images of the converter's json.
SPLIT_IDS = {'train': ['2008_000008', '2008_000002', '2010_000003'],  # Not sorted: list order.
             'val': ['2008_000010', '2009_000001']}


def _write_jpeg(path: pathlib.Path, rng: np.random.Generator) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(rng.integers(0, 256, size=(*SIZE, 3), dtype=np.uint8)).save(path)


def make_context_tree(root: pathlib.Path) -> pathlib.Path:
  """The example tree: VOCdevkit/VOC2010/{JPEGImages,SegmentationClassContext,ImageSets/
  SegmentationContext} with JPEGs and 'L' index PNGs that each hold every value 0..59 and 255;
  train.txt then lists its ids in SPLIT_IDS' (unsorted) order."""
  devkit = pathlib.Path(pascal_context.write_example_tree(str(root), _config(None).data))
  (devkit / 'VOC2010' / 'ImageSets' / 'SegmentationContext' / 'train.txt').write_text(
      ''.join(i + '\n' for i in SPLIT_IDS['train']))
  return devkit


def _config(root, variant=''):
  config = default.get_config()
  config.data.name = 'pascal_context'
  config.data.root = str(root)
  config.data.variant = variant
  return config


def _expected(raw: np.ndarray, variant: str, ignore_index: int = IGNORE) -> np.ndarray:
  out = np.full(raw.shape, -1)
  for value, cls in EXPECTED[variant].items():
    out[raw == value] = ignore_index if cls == IGNORE else cls
  assert (out >= 0).all()
  return out


@pytest.fixture
def tree(tmp_path) -> pathlib.Path:
  return make_context_tree(tmp_path)


@pytest.mark.parametrize('variant', ['', '59', '60'])
def test_labels_decode_pixel_for_pixel(tree, variant):
  config = _config(tree, variant)
  config.data.ignore_index = 250
  source = pascal_context.from_config(config.data, 'train')
  assert len(source) == 3 and source.num_classes == (60 if variant == '60' else 59)
  assert [source.name(i) for i in range(3)] == SPLIT_IDS['train']
  for i in range(len(source)):
    item = source[i]
    raw = np.array(Image.open(source.label_path(i)))
    assert set(np.unique(raw)) == {*range(60), 255}
    np.testing.assert_array_equal(item['label'], _expected(raw, variant or '59', 250))
    assert item['label'].dtype == np.uint8 and item['image'].shape == (*raw.shape, 3)
    assert source.image_size(i) == raw.shape
  val = pascal_context.from_config(config.data, 'val')
  assert [val.name(i) for i in range(len(val))] == SPLIT_IDS['val']


def test_class_metadata():
  names_60, palette_60 = pascal_context.class_names_and_palette(_config('x', '60').data)
  names_59, palette_59 = pascal_context.class_names_and_palette(_config('x', '59').data)
  assert len(names_60) == 60 and len(names_59) == 59 and palette_60.shape == (60, 3)
  assert pascal_context.class_names_and_palette(_config('x', '').data)[0] == names_59
  assert names_60[:3] == ('background', 'aeroplane', 'bag') and names_60[-1] == 'wood'
  assert names_59[0] == 'aeroplane' and names_59[36] == 'person' and names_59[-1] == 'wood'
  for value, name in DETAIL_TO_CONTEXT.values():
    assert names_60[value] == name
  np.testing.assert_array_equal(palette_60[0], [120, 120, 120])
  np.testing.assert_array_equal(palette_60[37], [102, 8, 255])  # person in mmseg's palette
  np.testing.assert_array_equal(palette_59[0], [180, 120, 120])
  np.testing.assert_array_equal(palette_59[-1], [31, 0, 255])
  assert palette_59.shape == (59, 3) and palette_59.dtype == np.uint8
  assert pascal_context.DETAIL_CATEGORY_IDS == tuple(sorted(DETAIL_TO_CONTEXT))


def test_bad_label_values_name_the_file(tree):
  path = tree / 'VOC2010' / 'SegmentationClassContext' / '2008_000010.png'
  raw = np.array(Image.open(path))
  raw[0, :2] = 60
  raw[1, 0] = 200
  Image.fromarray(raw).save(path)
  for variant in ('59', '60'):
    source = pascal_context.from_config(_config(tree, variant).data, 'val')
    with pytest.raises(files.DataError) as info:
      source[0]
    message = str(info.value)
    assert str(path) in message and '60 (2 px)' in message and '200 (1 px)' in message
    source[1]


def test_config_errors(tree):
  with pytest.raises(ValueError, match=re.escape("config.data.variant='61'")):
    pascal_context.from_config(_config(tree, '61').data, 'train')
  with pytest.raises(ValueError, match=re.escape("config.data.variant='61'")):
    pascal_context.class_names_and_palette(_config(tree, '61').data)
  config = _config(tree, '60')
  config.data.ignore_index = 59  # A class of the 60-class variant, not of the 59-class one.
  with pytest.raises(ValueError, match='ignore_index=59'):
    pascal_context.from_config(config.data, 'train')
  config.data.variant = '59'
  assert pascal_context.from_config(config.data, 'train')[0]['label'].max() == 59
  with pytest.raises(ValueError, match="unknown split 'test'"):
    pascal_context.from_config(config.data, 'test')


def test_layout_errors_name_the_expected_paths(tree):
  voc = tree / 'VOC2010'
  with pytest.raises(ValueError, match='root should be the VOCdevkit directory'):
    pascal_context.from_config(_config(voc).data, 'train')
  with pytest.raises(ValueError, match=re.escape(f'root should be {tree}')):
    pascal_context.from_config(_config(tree.parent).data, 'train')
  (voc / 'JPEGImages' / '2010_000003.jpg').unlink()
  with pytest.raises(ValueError, match=r'1 image\(s\) listed in .*train.txt.*2010_000003.jpg'):
    pascal_context.from_config(_config(tree).data, 'train')
  (voc / 'SegmentationClassContext' / '2009_000001.png').unlink()
  with pytest.raises(ValueError, match=r'1 label\(s\) listed in .*val.txt.*2009_000001.png'):
    pascal_context.from_config(_config(tree).data, 'val')
  list_path = voc / 'ImageSets' / 'SegmentationContext' / 'val.txt'
  list_path.unlink()
  with pytest.raises(ValueError, match=re.escape(f'split list {list_path} does not exist')):
    pascal_context.from_config(_config(tree).data, 'val')
  for png in (voc / 'SegmentationClassContext').iterdir():
    png.unlink()
  (voc / 'SegmentationClassContext').rmdir()
  with pytest.raises(ValueError, match='SegmentationClassContext.*python -m semseg_jax'):
    pascal_context.from_config(_config(tree).data, 'train')


# --- The converter --------------------------------------------------------------------------

# (image_id, file_name, phase) of the tiny json; 2008_000008 has no annotation at all.
JSON_IMAGES = [(2008000002, '2008_000002.jpg', 'train'), (2008000010, '2008_000010.jpg', 'val'),
               (2008000008, '2008_000008.jpg', 'train'), (2009000001, '2009_000001.jpg', 'test')]
# (image_id, category_id) in json order, images interleaved; overlaps make the order matter.
JSON_ANNOTATIONS = [(2008000002, 440), (2008000010, 284), (2008000002, 284), (2009000001, 2),
                    (2008000002, 427), (2008000010, 0), (2008000002, 458), (2008000010, 113),
                    (2009000001, 9), (2010000099, 360)]  # The last image_id is in no image.


def _rle(region: np.ndarray) -> dict:
  mask_api = pytest.importorskip('pycocotools.mask')
  rle = mask_api.encode(np.asfortranarray(region.astype(np.uint8)))
  return {'size': [int(n) for n in rle['size']], 'counts': rle['counts'].decode('ascii')}


def make_detail_json(path: pathlib.Path, seed: int = 0, annotations=JSON_ANNOTATIONS):
  """A trainval_merged.json with JSON_IMAGES and random overlapping rectangles, and the label
  PNG each image should get, painted here without the RLE."""
  rng = np.random.default_rng(seed)
  expected = {image_id: np.zeros(SIZE, np.uint8) for image_id, _, _ in JSON_IMAGES}
  annos = []
  for n, (image_id, category) in enumerate(annotations):
    region = np.zeros(SIZE, bool)
    top, left = rng.integers(0, 6), rng.integers(0, 8)
    region[top:top + rng.integers(4, 9), left:left + rng.integers(5, 11)] = True
    annos.append({'id': n + 1, 'image_id': image_id, 'category_id': category,
                  'segmentation': _rle(region), 'area': int(region.sum()), 'bbox': [0, 0, 1, 1],
                  'iscrowd': 0})
    if image_id in expected and category in DETAIL_TO_CONTEXT:
      expected[image_id][region] = DETAIL_TO_CONTEXT[category][0]
  detail = {
      'info': {}, 'annos_occlusion': [], 'annos_boundary': [], 'parts': [],
      'categories': [{'category_id': c, 'name': n, 'supercategory': 'object'}
                     for c, (_, n) in DETAIL_TO_CONTEXT.items()],
      'images': [{'image_id': i, 'file_name': f, 'height': SIZE[0], 'width': SIZE[1],
                  'phase': p, 'date_captured': ''} for i, f, p in JSON_IMAGES],
      'annos_segmentation': annos}
  path.write_text(json.dumps(detail))
  return {f.replace('.jpg', ''): expected[i] for i, f, _ in JSON_IMAGES}


def test_convert_detail_paints_in_json_order(tmp_path):
  pytest.importorskip('pycocotools')
  voc = tmp_path / 'VOCdevkit' / 'VOC2010'
  voc.mkdir(parents=True)
  expected = make_detail_json(voc / 'trainval_merged.json')
  # Overlaps are painted over, yet every annotation still shows somewhere.
  assert set(np.unique(expected['2008_000002'])) >= {56, 37, 55, 59}
  assert set(np.unique(expected['2008_000010'])) >= {0, 23, 37}
  assert pascal_context.convert_detail(str(voc / 'trainval_merged.json'), str(voc)) == 4
  for stem, painted in expected.items():
    with Image.open(voc / 'SegmentationClassContext' / f'{stem}.png') as png:
      assert png.mode == 'L'
      np.testing.assert_array_equal(np.array(png), painted)
  lists = voc / 'ImageSets' / 'SegmentationContext'
  assert (lists / 'train.txt').read_text() == '2008_000002\n2008_000008\n'
  assert (lists / 'val.txt').read_text() == '2008_000010\n'
  rng = np.random.default_rng(1)
  for stem in expected:
    _write_jpeg(voc / 'JPEGImages' / f'{stem}.jpg', rng)
  for variant in ('59', '60'):
    source = pascal_context.from_config(_config(tmp_path / 'VOCdevkit', variant).data, 'train')
    assert [source.name(i) for i in range(len(source))] == ['2008_000002', '2008_000008']
    np.testing.assert_array_equal(source[0]['label'],
                                  _expected(expected['2008_000002'], variant))


def test_convert_detail_keeps_existing_lists_and_cli(tmp_path, capsys):
  pytest.importorskip('pycocotools')
  voc = tmp_path / 'VOC2010'
  lists = voc / 'ImageSets' / 'SegmentationContext'
  lists.mkdir(parents=True)
  (lists / 'train.txt').write_text('2008_000008\n')
  make_detail_json(voc / 'trainval_merged.json')
  pascal_context.main([f'--json={voc / "trainval_merged.json"}', f'--voc={voc}'])
  assert '4 label PNGs' in capsys.readouterr().out
  assert (lists / 'train.txt').read_text() == '2008_000008\n'
  assert (lists / 'val.txt').read_text() == '2008_000010\n'
  assert len(list((voc / 'SegmentationClassContext').glob('*.png'))) == 4


def test_convert_detail_rejects_unknown_categories(tmp_path):
  pytest.importorskip('pycocotools')
  json_path = tmp_path / 'trainval_merged.json'
  make_detail_json(json_path, annotations=[(2008000010, 45), (2008000010, 1)])  # 1: accordion.
  with pytest.raises(ValueError) as info:
    pascal_context.convert_detail(str(json_path), str(tmp_path))
  message = str(info.value)
  assert str(json_path) in message and '2008_000010.jpg' in message
  assert 'category_id 1,' in message


def test_convert_detail_without_pycocotools(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, 'pycocotools', None)
  monkeypatch.setitem(sys.modules, 'pycocotools.mask', None)
  with pytest.raises(ImportError, match='pip install pycocotools'):
    pascal_context.convert_detail(str(tmp_path / 'trainval_merged.json'), str(tmp_path))
