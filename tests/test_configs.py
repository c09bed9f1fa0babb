"""The config files: each loads with each of its arguments, passes the checks and builds its
model; each accepts `smoke` and then reads a tiny tree in its dataset's layout; the dataset
settings of configs/datasets.py; the argument convention of configs/common.py."""

import functools
import importlib
import inspect
import os

import pytest

from configs import common
from configs import datasets as dataset_settings
from configs import segformer
from semseg_jax import models
from semseg_jax import prepare
from semseg_jax.data import datasets
from semseg_jax.evaluators import inference
from semseg_jax.tools import model_stats as stats
from semseg_jax.tools import model_table as table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

EXPECTED_CLASSES = {'cityscapes': 19, 'cityscapes_1024x1024': 19, 'cityscapes_half_frames': 19,
                    'ade20k': 150, 'voc12aug': 21,
                    'pascal_context_59': 59, 'pascal_context_60': 60, 'coco_stuff164k': 171,
                    'coco_stuff10k': 171, 'camvid': 11, 'mapillary': 65}


@pytest.mark.parametrize('setting', sorted(dataset_settings.SETTINGS))
def test_every_setting_names_a_dataset_and_a_valid_evaluation(setting):
  config = segformer.get_config(f'{setting},b0')
  names, palette = datasets.class_names_and_palette(config.data)
  assert len(names) == EXPECTED_CLASSES[setting] and palette.shape == (len(names), 3)
  inference.check_eval_config(config.eval)
  crop_h, crop_w = config.augment.crop_size
  if config.eval.mode == 'slide':
    assert tuple(config.eval.crop_size) == (crop_h, crop_w)


def test_unknown_dataset_is_named():
  with pytest.raises(ValueError, match="configs/segformer.py: dataset='kitti' is not one of"):
    segformer.get_config('kitti,b0')


# Every benchmark config file and its arguments ('' = the default).
CONFIG_ARGUMENTS = {
    'ade20k_bisenetv1': ('r18', 'r50', 'r101'), 'cityscapes_bisenetv1': ('r18', 'r50'),
    'ade20k_bisenetv2': ('',), 'cityscapes_bisenetv2': ('',),
    'ade20k_regseg': ('exp48_decoder26', 'exp53_decoder29'),
    'cityscapes_regseg': ('exp48_decoder26', 'exp53_decoder29'),
    'ade20k_segnext': ('t', 's', 'b', 'l'), 'cityscapes_segnext': ('t', 's', 'b', 'l'),
    'ade20k_sfnet': ('r18', 'r50', 'r101'), 'cityscapes_sfnet': ('r18', 'r50', 'r101'),
    'ade20k_stdc': ('stdc1', 'stdc2'), 'cityscapes_stdc': ('stdc1', 'stdc2'),
    'ade20k_topformer': ('t', 's', 'b'), 'cityscapes_topformer': ('t', 'b'),
    'ade20k_deeplabv3': ('r50', 'r101'), 'ade20k_deeplabv3plus': ('r50', 'r101'),
    'ade20k_fcn': ('r50', 'r101'), 'ade20k_pspnet': ('r50', 'r101'),
    'ade20k_upernet': ('r50', 'r101'), 'ade20k_segformer': ('b0', 'b5'),
    'camvid_enet': ('',), 'camvid_segnet': ('segnet', 'bayesian'), 'camvid_unet': ('bn', 'paper'),
    'camvid_linknet': ('r18', 'r34'), 'cityscapes_erfnet': ('paper', 'mmseg'),
    'cityscapes_cgnet': ('paper', 'mmseg', 'mmseg_512x1024'),
    'cityscapes_icnet': ('r18', 'r50', 'r101', 'r50,160k'), 'cityscapes_espnet': ('espnet', 'c'),
    'cityscapes_edanet': ('',), 'cityscapes_drn': ('d22', 'd38', 'c26', 'c42', 'd105'),
    'camvid_fc_densenet': ('103', '67', '56'), 'voc12aug_lw_refinenet': ('r50', 'r101', 'r152'),
    'voc12aug_refinenet': ('r101', 'r50', 'r152'), 'voc12aug_deconvnet': ('',),
    'cityscapes_deeplabv3': ('r50', 'r101'), 'cityscapes_deeplabv3plus': ('r50', 'r101', 'mv2'),
    'cityscapes_duc_hdc': ('r50', 'r101'), 'cityscapes_fcn': ('r50', 'r101'),
    'cityscapes_gcn': ('r50', 'r101', 'r152v1'), 'cityscapes_pspnet': ('r50', 'r101', 'mv2'),
    'cityscapes_upernet': ('r50', 'r101'), 'voc12aug_deeplabv3plus': ('r50', 'r101'),
    'voc12aug_deeplabv3_mobilenet': ('',),
    'voc12aug_fcn8s': ('8s', '16s', '32s'),
}
NUM_CLASSES_OF = {'ade20k': 150, 'cityscapes': 19, 'camvid': 11, 'voc12aug': 21}


@functools.cache
def _table_models() -> set[tuple[str, int]]:
  """(config.model as JSON, classes) of the README table's rows, which the table test builds
  and counts (an argument that spells a config's default, e.g. voc12aug_fcn8s:8s, is a row)."""
  return {(table.load_config(row.config, row.argument).model.to_json(), row.num_classes)
          for row in table.ROWS}


def test_every_benchmark_config_is_listed():
  names = {name[:-3] for name in os.listdir(os.path.join(ROOT, 'configs'))
           if name.split('_')[0] in NUM_CLASSES_OF}
  assert names == set(CONFIG_ARGUMENTS)


@pytest.mark.parametrize('name,argument', [(name, argument) for name, arguments in
                                           sorted(CONFIG_ARGUMENTS.items())
                                           for argument in arguments])
def test_config_loads_checks_and_builds_its_model(name, argument):
  config = table.load_config(name, argument)
  prepare.check_config(config)
  num_classes = NUM_CLASSES_OF[name.split('_')[0]]
  if (config.model.to_json(), num_classes) not in _table_models():
    # (The table's models are built and counted by tests/models/test_zoo.py's table test.)
    model = models.build_model(config.model, num_classes)
    variables = stats.abstract_variables(model, (64, 64))
    assert stats.count_params(variables['params']) > 0
  module = importlib.import_module(f'configs.{name}')
  if inspect.signature(module.get_config).parameters:  # A bad argument is named with its file.
    with pytest.raises(ValueError, match=name):
      module.get_config('no-such-argument')


CONFIG_FILES = sorted(name[:-3] for name in os.listdir(os.path.join(ROOT, 'configs'))
                      if name.endswith('.py') and name[:-3] not in (
                          '__init__', 'common', 'datasets', 'cnn_recipes'))


@pytest.mark.parametrize('name', CONFIG_FILES)
def test_every_config_accepts_smoke_and_reads_its_example_tree(name, tmp_path):
  """`smoke` keeps the model and recipe, shrinks the run, and points the data at a tiny tree in
  the dataset's own layout (written by prepare from config.data.example_tree)."""
  module = importlib.import_module(f'configs.{name}')
  full, config = module.get_config(), module.get_config('smoke')
  assert (config.model.name, config.model.variant) == (full.model.name, full.model.variant)
  assert config.optimizer.to_dict() == full.optimizer.to_dict()
  assert config.train.num_steps == common.SMOKE_STEPS and config.train.batch_size == 2
  # A config whose model needs larger inputs declares its smoke crop (DeconvNet).
  assert tuple(config.augment.crop_size) == getattr(module, 'SMOKE_CROP', common.SMOKE_CROP)
  prepare.check_config(config)
  prepare.write_example_tree(config, str(tmp_path))
  for split in (config.data.train_split, config.data.eval_split):
    source = datasets.make_source(config.data, split, config.seed)
    example = source[0]
    assert example['image'].shape[:2] == example['label'].shape and len(source) >= 2
  if datasets.DATASETS[datasets.kind(config.data.name)].write_example_tree:
    assert config.data.root.startswith(str(tmp_path))


@pytest.mark.parametrize('arg, expected', [
    ('', dict(dataset='ade20k', variant='b0', smoke=False)),
    ('cityscapes,b2', dict(dataset='cityscapes', variant='b2', smoke=False)),
    ('variant=b3,smoke', dict(dataset='ade20k', variant='b3', smoke=True)),
    ('voc12aug, smoke=false', dict(dataset='voc12aug', variant='b0', smoke=False)),
])
def test_arguments_by_position_name_or_flag(arg, expected):
  spec = dict(dataset='ade20k', variant='b0', smoke=False)
  assert vars(common.parse_arg('configs/x.py', arg, **spec)) == expected


@pytest.mark.parametrize('arg, message', [
    ('b0,b1,b2', "argument 'b2' has no place"), ('size=b0', "unknown argument 'size'"),
    ('smoke=maybe', 'is not a boolean'), ('ade20k,dataset=voc', "'dataset' given twice"),
])
def test_bad_arguments_name_the_config_file(arg, message):
  with pytest.raises(ValueError, match=f'configs/x.py: .*{message}'):
    common.parse_arg('configs/x.py', arg, dataset='ade20k', variant='b0', smoke=False)
