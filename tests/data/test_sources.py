"""Sources beyond a dataset's own folders: the config-only folder dataset, TFDS, ArrayRecord,
the synthetic dataset."""

import io
import json
import pathlib
import pickle
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from configs import default
from semseg_jax.data import datasets
from semseg_jax.data import write_arrayrecord
from semseg_jax.data.datasets import files
from semseg_jax.data.datasets import folder
from semseg_jax.data.datasets import synthetic
from tests.helpers import bad_files

COLOURS = ((10, 20, 30), (200, 0, 0), (0, 200, 0))  # Three classes as RGB mask colours.
REPO = pathlib.Path(__file__).resolve().parents[2]


def _write_folder_tree(config) -> None:
  """folder's example tree where config.data describes it: images/{train,val}/*.jpg (3 and 2)
  with labels/{split}/*.png, index maps (0..2, 255 ignored) or, with config.data.label_colors,
  RGB masks (COLOURS, (0, 0, 0) ignored)."""
  assert folder.write_example_tree(config.data.root, config.data, num_train=3,
                                   num_eval=2) == config.data.root


def _codes(path: str) -> np.ndarray:
  """A stored label as codes 0..2 (the classes) and 3 (ignored), whichever its encoding."""
  stored = np.array(Image.open(path))
  if stored.ndim == 2:
    assert set(np.unique(stored)) == {0, 1, 2, 255}
    return np.where(stored == 255, 3, stored)
  codes = np.full(stored.shape[:2], -1)
  for code, colour in enumerate(COLOURS + ((0, 0, 0),)):
    codes[(stored == colour).all(axis=-1)] = code
  assert set(np.unique(codes)) == {0, 1, 2, 3}
  return codes


def _folder_config(root, **data):
  config = default.get_config()
  config.data.name = 'folder'
  config.data.root = str(root)
  config.data.class_names = ('a', 'b', 'c')
  for key, value in data.items():
    setattr(config.data, key, value)
  return config


@pytest.mark.parametrize('rgb', [False, True])
def test_folder_dataset_from_config_alone(tmp_path, rgb):
  extra = {'label_colors': COLOURS, 'ignore_colors': ((0, 0, 0),)} if rgb else {}
  config = _folder_config(tmp_path, ignore_index=200, **extra)
  _write_folder_tree(config)
  source = datasets.make_source(config.data, 'train')
  assert len(source) == 3 and source.class_names == ('a', 'b', 'c')
  for i in range(3):
    raw = _codes(source.label_path(i))
    assert Image.open(source.label_path(i)).mode == ('RGB' if rgb else 'L')
    np.testing.assert_array_equal(source[i]['label'], np.where(raw == 3, 200, raw))
  names, palette = datasets.class_names_and_palette(config.data)
  assert names == ('a', 'b', 'c') and palette.shape == (3, 3)


def test_folder_reduce_zero_label_split_list_and_errors(tmp_path):
  _write_folder_tree(_folder_config(tmp_path))
  (tmp_path / 'val.txt').write_text('val_1\n')
  config = _folder_config(tmp_path, reduce_zero_label=True, class_names=('b', 'c'))
  config.data.folder.split_list = '{split}.txt'
  source = datasets.make_source(config.data, 'val')
  assert len(source) == 1 and source.name(0) == 'val_1'
  raw = _codes(str(tmp_path / 'labels' / 'val' / 'val_1.png')).astype(int)
  np.testing.assert_array_equal(source[0]['label'],
                                np.select([raw == 0, raw == 3], [255, 255], raw - 1))
  with pytest.raises(ValueError, match='train.txt does not exist'):
    datasets.make_source(config.data, 'train')
  config.data.folder.split_list = ''
  config.data.class_names = ()
  with pytest.raises(ValueError, match='config.data.class_names'):
    datasets.make_source(config.data, 'train')
  config = _folder_config(tmp_path, label_colors=COLOURS)
  with pytest.raises(files.DataError, match='label has shape'):  # Index PNGs, colour table.
    datasets.make_source(config.data, 'train')[0]
  config = _folder_config(tmp_path, label_colors=COLOURS[:2])
  with pytest.raises(ValueError, match='2 colours for 3 classes'):
    datasets.make_source(config.data, 'train')


def test_unknown_mask_colour_names_the_file(tmp_path):
  config = _folder_config(tmp_path, label_colors=COLOURS, ignore_colors=((0, 0, 0),))
  _write_folder_tree(config)
  path = tmp_path / 'labels' / 'val' / 'val_0.png'
  mask = np.array(Image.open(path))
  mask[2, 3] = (1, 2, 3)
  Image.fromarray(mask).save(path)
  with pytest.raises(files.DataError) as info:
    datasets.make_source(config.data, 'val')[0]
  assert str(path) in str(info.value) and '(1, 2, 3) (1 px)' in str(info.value)


# --- TFDS ---------------------------------------------------------------------------------------


def _tfds_config(data_dir):
  config = default.get_config()
  config.data.name = 'tfds:tiny_segmentation'
  config.data.tfds.data_dir = str(data_dir)
  config.data.tfds.image_feature = 'picture'
  config.data.tfds.label_feature = 'mask'
  config.data.class_names = ('x', 'y', 'z')
  config.data.reduce_zero_label = True
  return config


def test_tfds_source_reads_features_and_maps_labels(tfds_dir):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  config = _tfds_config(tfds_dir)
  source = datasets.make_source(config.data, 'train')
  reference = tfds.data_source('tiny_segmentation', split='train', data_dir=str(tfds_dir))
  assert len(source) == 4 and source.num_classes == 3
  for i in range(4):
    raw = reference[i]['mask'][..., 0]
    np.testing.assert_array_equal(source[i]['label'], np.where(raw == 0, 255, raw - 1))
    np.testing.assert_array_equal(source[i]['image'], reference[i]['picture'])
    assert source.image_size(i) == raw.shape
  assert len(datasets.make_source(config.data, 'test')) == 2
  assert len(datasets.make_source(config.data, 'train[:50%]')) == 2


def test_tfds_errors_name_the_field(tfds_dir):
  config = _tfds_config(tfds_dir)
  config.data.tfds.label_feature = 'segmentation_mask'
  with pytest.raises(ValueError, match=r"config.data.tfds.label_feature=.*'mask', 'picture'"):
    datasets.make_source(config.data, 'train')
  config = _tfds_config(tfds_dir)
  config.data.name = 'tfds:no_such_dataset'
  with pytest.raises(ValueError, match='config.data.tfds.data_dir'):
    datasets.make_source(config.data, 'train')
  config = _tfds_config(tfds_dir)
  config.data.reduce_zero_label = False  # Raw 3 is then no class of three.
  with pytest.raises(files.DataError, match="feature 'mask'.*3"):
    source = datasets.make_source(config.data, 'train')
    for i in range(len(source)):
      source[i]


# --- ArrayRecord --------------------------------------------------------------------------------


def _cityscapes_config(root):
  config = default.get_config()
  config.data.name = 'cityscapes'
  config.data.root = str(root)
  return config


def test_arrayrecord_round_trip_is_exact(tmp_path):
  config = _cityscapes_config(None)
  config.data.root = datasets.write_example_tree(config.data, str(tmp_path / 'data'))
  out = tmp_path / 'packed'
  metadata = write_arrayrecord.convert_split(config, 'train', str(out), examples_per_shard=3,
                                             workers=1)
  assert metadata['num_examples'] == 4 and len(metadata['shards']) == 2
  assert sorted(p.name for p in out.iterdir()) == [
      'train-00000-of-00002.array_record', 'train-00001-of-00002.array_record', 'train.json']
  original = datasets.make_source(config.data, 'train')
  packed_config = default.get_config()
  packed_config.data.name = f'arrayrecord:{out}'
  packed = datasets.make_source(packed_config.data, 'train')
  assert len(packed) == 4 and packed.class_names == original.class_names
  for i in range(4):
    assert packed.name(i) == original.name(i)
    assert packed.image_size(i) == original.image_size(i)
    for key in ('image', 'label'):
      np.testing.assert_array_equal(packed[i][key], original[i][key])
  names, palette = datasets.class_names_and_palette(packed_config.data)
  assert names == original.class_names
  np.testing.assert_array_equal(palette, original.palette)
  packed_config.data.ignore_index = 254  # Stored 255 is remapped on read.
  relabelled = datasets.make_source(packed_config.data, 'train')
  label = original[0]['label']
  np.testing.assert_array_equal(relabelled[0]['label'], np.where(label == 255, 254, label))
  with pytest.raises(ValueError, match='val.json does not exist'):
    datasets.make_source(packed_config.data, 'val')


def test_write_arrayrecord_command_and_bad_examples(tmp_path):
  root = pathlib.Path(datasets.write_example_tree(_cityscapes_config(None).data,
                                                  str(tmp_path / 'data')))
  bad = next((root / 'leftImg8bit' / 'val' / 'frankfurt').glob('*.png'))
  bad.write_bytes(b'not an image')
  out = tmp_path / 'packed'
  command = [sys.executable, '-m', 'semseg_jax.data.write_arrayrecord',
             '--config=configs/default.py', '--config.data.name=cityscapes',
             f'--config.data.root={root}', '--split=val', f'--out={out}', '--workers=1']
  failed = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
  assert failed.returncode != 0 and str(bad) in failed.stderr
  done = subprocess.run(command + ['--config.data.skip_bad_examples=True',
                                   '--config.data.max_bad_fraction=0.5'],
                        capture_output=True, text=True, cwd=REPO)
  assert done.returncode == 0, done.stderr[-2000:]
  metadata = json.loads((out / 'val.json').read_text())
  assert metadata['num_examples'] == 1 and str(bad) in metadata['skipped'][0]


@pytest.mark.parametrize('dataset', ['folder', 'ade20k'])
def test_a_decompression_bomb_is_a_bad_file_under_a_limit_the_config_sets(tmp_path, dataset,
                                                                           monkeypatch):
  """A PNG whose header claims 30000 x 30000 pixels (image or label) is a DataError naming the
  file and config.data.max_image_pixels before any pixel is decoded, so skip_bad_examples can
  skip it; the field raises the limit past PIL's own (None: no limit), lowers it for every
  file, and travels with the source into grain's worker processes."""
  # PIL's process-wide limit as a fresh process has it (reading raises it), restored after.
  monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', files.DEFAULT_MAX_IMAGE_PIXELS)
  config = _folder_config(tmp_path)
  config.data.name = dataset
  config.data.root = datasets.write_example_tree(config.data, str(tmp_path))
  source = datasets.make_source(config.data, 'val')
  bomb_label, bomb_image = source.label_path(0), source.image_path(1)
  for path in (bomb_label, bomb_image):
    bad_files.write_decompression_bomb(path)
  for read, path in [(lambda: source[0], bomb_label), (lambda: source.read_label(0), bomb_label),
                     (lambda: source[1], bomb_image), (lambda: source.image_size(1), bomb_image)]:
    with pytest.raises(files.DataError, match=f'{path}.*config.data.max_image_pixels='
                                              f'{files.DEFAULT_MAX_IMAGE_PIXELS}'):
      read()
  assert source[2]['image'].ndim == 3  # The others read as before.

  config.data.max_image_pixels = None  # No limit, not even PIL's: trusted data.
  unlimited = datasets.make_source(config.data, 'val')
  assert unlimited.image_size(1) == (30000, 30000)
  assert unlimited[2]['label'].ndim == 2
  monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', files.DEFAULT_MAX_IMAGE_PIXELS)
  config.data.max_image_pixels = 10**9  # Raised past PIL's limit (twice 89,478,485).
  assert datasets.make_source(config.data, 'val').image_size(1) == (30000, 30000)
  config.data.max_image_pixels = 100  # Lowered: every file is held to it.
  small = pickle.loads(pickle.dumps(datasets.make_source(config.data, 'val')))
  assert small.max_image_pixels == 100
  with pytest.raises(files.DataError, match='max_image_pixels=100'):
    small[2]


def test_encoded_bytes_are_held_to_the_limit_before_decoding():
  """An ArrayRecord image: the header is checked before OpenCV decodes a pixel."""
  buffer = io.BytesIO()
  Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(buffer, format='PNG')
  data = buffer.getvalue()
  assert files.decode_image(data, 'record 7', max_pixels=600).shape == (20, 30, 3)
  with pytest.raises(files.DataError, match='record 7: its header claims 30 x 20 = 600 pixels'):
    files.decode_image(data, 'record 7', max_pixels=599)


def test_a_synthetic_source_generates_a_kept_example_once_and_hands_out_copies(monkeypatch):
  generated = []
  generate = synthetic.generate_example
  monkeypatch.setattr(synthetic, 'generate_example',
                      lambda *args: generated.append(args[2]) or generate(*args))
  monkeypatch.setattr(synthetic, 'KEPT_BYTES', 2 * 4 * 16 * 24)  # Indices 0 and 1 are kept.
  source = synthetic.SyntheticSource('train', 4, (16, 24), seed=3)
  want_image, want_label = generate(3, 0, 1, (16, 24))
  first = source[1]
  first['image'][:], first['label'][:] = 0, 7  # A transform writing into what it was given.
  again = source[1]
  np.testing.assert_array_equal(again['image'], want_image)
  np.testing.assert_array_equal(again['label'], want_label)
  assert generated == [1]
  source[2], source[2]  # Beyond the kept bytes: generated each time.
  assert generated == [1, 2, 2]
  worker = pickle.loads(pickle.dumps(source))  # What a grain worker process receives.
  np.testing.assert_array_equal(worker[1]['image'], want_image)
  assert generated == [1, 2, 2, 1]
