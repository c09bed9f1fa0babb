"""--config by path or by name: a name is looked up in the `configs` package, wherever it is
installed; anything else is left to config_flags, with a message naming both ways."""

from semseg_jax import config_files
from tests.helpers import run_main

CONFIGS = run_main.REPO / 'configs'


def test_a_name_becomes_the_file_of_the_configs_package():
  assert config_files.configs_dir() == CONFIGS
  assert config_files.resolve('ade20k_segformer:b2') == f'{CONFIGS}/ade20k_segformer.py:b2'
  assert config_files.resolve('quickstart') == f'{CONFIGS}/quickstart.py'


def test_paths_and_unknown_names_are_left_as_they_are(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  (tmp_path / 'quickstart').write_text('')  # A file of that name here wins over the config.
  for value in ('configs/ade20k_segformer.py:b0', 'mine.py', 'quickstart', 'nosuch:b0',
                f'{tmp_path}/x'):
    assert config_files.resolve(value) == value


def test_argv_is_resolved_in_either_flag_form():
  argv = ['prog', '--config=cityscapes_pspnet:r101,smoke', '--workdir=w']
  assert config_files.resolve_argv(argv)[1] == f'--config={CONFIGS}/cityscapes_pspnet.py:r101,smoke'
  argv = ['prog', '--config', 'quickstart', '--config.seed=1']
  assert config_files.resolve_argv(argv) == ['prog', '--config', f'{CONFIGS}/quickstart.py',
                                             '--config.seed=1']


def test_a_missing_config_is_named_with_both_ways_to_give_one(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  message = config_files.problem(['--config=ade20k_segformr:b0'])
  assert "no config file 'ade20k_segformr'" in message
  assert str(tmp_path) in message and str(CONFIGS) in message
  assert config_files.problem([f'--config={CONFIGS}/quickstart.py:x']) is None
