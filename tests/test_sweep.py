"""launch/sweep.py: runs of a grid or list, their workdirs and commands, the summary table."""

import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location('sweep', REPO / 'launch' / 'sweep.py')
sweep = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sweep)


def test_grid_and_list_expand_to_runs():
  runs = sweep.expand(['optimizer.lr=1e-3,3e-3', 'model.drop_path_rate=0.0,0.1'],
                      ['train.batch_size=8 optimizer.lr=1e-2'])
  assert runs == [
      {'optimizer.lr': '1e-3', 'model.drop_path_rate': '0.0'},
      {'optimizer.lr': '1e-3', 'model.drop_path_rate': '0.1'},
      {'optimizer.lr': '3e-3', 'model.drop_path_rate': '0.0'},
      {'optimizer.lr': '3e-3', 'model.drop_path_rate': '0.1'},
      {'train.batch_size': '8', 'optimizer.lr': '1e-2'}]
  with pytest.raises(ValueError, match='no runs'):
    sweep.expand([], [])
  with pytest.raises(ValueError, match="override 'lr'"):
    sweep.expand(['lr'], [])


def test_print_mode_gives_each_run_its_workdir(tmp_path):
  result = subprocess.run(
      [sys.executable, 'launch/sweep.py', 'print', '--config=configs/quickstart.py',
       f'--root={tmp_path}', '--grid', 'optimizer.lr=1e-3,3e-3', '--',
       '--config.train.num_steps=10'], cwd=REPO, capture_output=True, text=True, check=True)
  lines = result.stdout.strip().split('\n')
  assert len(lines) == 2
  for line, lr in zip(lines, ('1e-3', '3e-3')):
    assert f'--workdir={tmp_path}/optimizer.lr={lr}' in line
    assert f'--config.optimizer.lr={lr}' in line and line.endswith('--config.train.num_steps=10')
    assert '-m semseg_jax.main --config=configs/quickstart.py' in line
  saved = json.loads((tmp_path / 'optimizer.lr=3e-3' / 'sweep_overrides.json').read_text())
  assert saved == {'config': 'configs/quickstart.py', 'overrides': {'optimizer.lr': '3e-3'}}


def test_summarize_tabulates_the_final_metrics(tmp_path, capsys):
  for lr, miou in (('1e-3', 0.5), ('3e-3', 0.625)):
    run = tmp_path / f'optimizer.lr={lr}'
    sweep._write_overrides(str(run), 'c.py', {'optimizer.lr': lr})
    with open(run / 'metrics.jsonl', 'w') as f:
      f.write(json.dumps({'step': 5, 'evaluator': 'val', 'mIoU': 0.1}) + '\n')
      f.write(json.dumps({'step': 10, 'evaluator': 'val', 'aAcc': 0.9, 'mAcc': 0.7, 'mIoU': miou,
                          'FWIoU': 0.8, 'mDice': 0.75}) + '\n')
      f.write(json.dumps({'step': 10, 'evaluator': 'val_ms', 'mIoU': miou + 0.01}) + '\n')
  sweep._write_overrides(str(tmp_path / 'unfinished'), 'c.py', {'optimizer.lr': '1e-1'})
  csv_path = tmp_path / 'summary.csv'
  assert sweep.main(['summarize', str(tmp_path), f'--csv={csv_path}']) == 0
  table = capsys.readouterr().out.strip().split('\n')
  assert table[0] == ('| run | optimizer.lr | evaluator | step | aAcc | mAcc | mIoU | FWIoU | '
                      'mDice |')
  assert table[2] == ('| optimizer.lr=1e-3 | 1e-3 | val | 10 | 0.9000 | 0.7000 | 0.5000 | '
                      '0.8000 | 0.7500 |')
  assert table[3] == '| optimizer.lr=1e-3 | 1e-3 | val_ms | 10 |  |  | 0.5100 |  |  |'
  assert '| unfinished | 1e-1 |  | not evaluated |' in table[6]
  rows = csv_path.read_text().strip().split('\n')
  assert rows[0] == 'run,optimizer.lr,evaluator,step,aAcc,mAcc,mIoU,FWIoU,mDice'
  assert rows[3] == 'optimizer.lr=3e-3,3e-3,val,10,0.9,0.7,0.625,0.8,0.75'
