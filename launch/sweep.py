"""Ablation sweeps: one base config, a grid or a list of overrides, a workdir per run, one table.

  # Print the command of every run of a 2 x 2 grid (each with its own workdir under --root):
  python launch/sweep.py print --config=configs/quickstart.py --root=runs/ablation \
      --grid optimizer.lr=1e-3,3e-3 --grid model.drop_path_rate=0.0,0.1
  # Or an explicit list of runs (each --run is one run's space-separated overrides):
  python launch/sweep.py print --config=... --root=... --run "optimizer.lr=1e-3" \
      --run "optimizer.lr=3e-3 train.batch_size=8"
  # Run them one after another on this machine (extra flags after -- go to every run):
  python launch/sweep.py run --config=... --root=... --grid ... -- --config.data.root=/data
  # One table of every run's final evaluation (Markdown on stdout, CSV next to it):
  python launch/sweep.py summarize runs/ablation [more dirs ...] --csv=runs/ablation.csv

A run's workdir is <root>/<override>=<value>,... and holds sweep_overrides.json, which
`summarize` reads to put each override in a column beside the last line of metrics.jsonl of each
of the run's evaluators (config.evals: one row per run and evaluator).
Rerunning `run` resumes unfinished runs from their checkpoints (the training entry point's
own behaviour). Print mode is how to use a cluster: submit each printed command as a job.
"""

import argparse
import csv
import io
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
from typing import Any, Sequence

OVERRIDES_FILE = 'sweep_overrides.json'
METRIC_KEYS = ('step', 'aAcc', 'mAcc', 'mIoU', 'FWIoU', 'mDice')


def _parse_override(text: str) -> tuple[str, str]:
  key, sep, value = text.partition('=')
  if not sep or not key or not re.fullmatch(r'[A-Za-z_][\w.]*', key):
    raise ValueError(f'override {text!r}: expected <config field>=<value>, e.g. '
                     f'optimizer.lr=1e-3.')
  return key, value


def expand(grid: Sequence[str], runs: Sequence[str]) -> list[dict[str, str]]:
  """The runs' overrides: the product of `grid` entries (field=v1,v2,...) then each `runs`
  entry (space-separated field=value pairs); at least one run."""
  axes = []
  for entry in grid:
    key, values = _parse_override(entry)
    axes.append([(key, v) for v in values.split(',')])
  expanded = [dict(combination) for combination in itertools.product(*axes)] if axes else []
  for entry in runs:
    expanded.append(dict(_parse_override(item) for item in shlex.split(entry)))
  if not expanded:
    raise ValueError('no runs: give --grid field=v1,v2 and/or --run "field=value ...".')
  return expanded


def run_name(overrides: dict[str, str]) -> str:
  """A workdir name for a run: 'optimizer.lr=0.001,train.batch_size=8' made path-safe."""
  name = ','.join(f'{k}={v}' for k, v in overrides.items()) or 'base'
  return re.sub(r'[^\w.,=+-]', '_', name)


def commands(config: str, root: str, overrides: Sequence[dict[str, str]],
             extra: Sequence[str] = ()) -> list[tuple[str, list[str]]]:
  """(workdir, argv) of every run."""
  names = [run_name(o) for o in overrides]
  if len(set(names)) != len(names):
    raise ValueError(f'two runs would share a workdir: {names}.')
  out = []
  for name, run_overrides in zip(names, overrides):
    workdir = os.path.join(root, name)
    argv = [sys.executable, '-m', 'semseg_jax.main', f'--config={config}',
            f'--workdir={workdir}', *[f'--config.{k}={v}' for k, v in run_overrides.items()],
            *extra]
    out.append((workdir, argv))
  return out


def _write_overrides(workdir: str, config: str, overrides: dict[str, str]) -> None:
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, OVERRIDES_FILE), 'w') as f:
    json.dump({'config': config, 'overrides': overrides}, f, indent=1)


def _run_dirs(paths: Sequence[str]) -> list[str]:
  """Run workdirs among `paths` (a run's workdir, or a sweep root holding them)."""
  found = []
  for path in paths:
    if os.path.isfile(os.path.join(path, OVERRIDES_FILE)):
      found.append(path)
    elif os.path.isdir(path):
      found += sorted(os.path.join(path, d) for d in os.listdir(path)
                      if os.path.isfile(os.path.join(path, d, OVERRIDES_FILE)))
  return found


def summarize(paths: Sequence[str]) -> tuple[list[str], list[list[Any]]]:
  """(columns, rows): one row per run and evaluator with its overrides and that evaluator's
  final metrics.jsonl line (runs without one show 'not evaluated')."""
  runs = _run_dirs(paths)
  if not runs:
    raise ValueError(f'no run workdirs (with {OVERRIDES_FILE}) in {list(paths)}.')
  infos = []
  for run in runs:
    with open(os.path.join(run, OVERRIDES_FILE)) as f:
      info = json.load(f)
    finals = {}  # Evaluator -> its last line.
    metrics_path = os.path.join(run, 'metrics.jsonl')
    if os.path.isfile(metrics_path):
      with open(metrics_path) as f:
        for line in f:
          if line.strip():
            record = json.loads(line)
            finals[record.get('evaluator', record.get('split', ''))] = record
    infos.append((run, info['overrides'], finals))
  keys = list(dict.fromkeys(k for _, overrides, _ in infos for k in overrides))
  columns = ['run', *keys, 'evaluator', *METRIC_KEYS]
  rows = []
  for run, overrides, finals in infos:
    name = os.path.basename(os.path.normpath(run))
    values = [overrides.get(k, '') for k in keys]
    if not finals:
      rows.append([name, *values, '', 'not evaluated'] + [''] * (len(METRIC_KEYS) - 1))
    for evaluator, final in finals.items():
      rows.append([name, *values, evaluator, *[final.get(k, '') for k in METRIC_KEYS]])
  return columns, rows


def _format(value: Any) -> str:
  return f'{value:.4f}' if isinstance(value, float) else str(value)


def markdown(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  lines = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
  lines += ['| ' + ' | '.join(_format(v) for v in row) + ' |' for row in rows]
  return '\n'.join(lines)


def to_csv(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  out = io.StringIO()
  writer = csv.writer(out)
  writer.writerow(columns)
  writer.writerows(rows)
  return out.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  extra = argv[argv.index('--') + 1:] if '--' in argv else []
  argv = argv[:argv.index('--')] if '--' in argv else argv
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  sub = parser.add_subparsers(dest='command', required=True)
  for name in ('print', 'run'):
    p = sub.add_parser(name)
    p.add_argument('--config', required=True, help='Base config (path[:variant]).')
    p.add_argument('--root', required=True, help='Directory of the runs\' workdirs.')
    p.add_argument('--grid', action='append', default=[], help='field=v1,v2,... (repeatable).')
    p.add_argument('--run', action='append', default=[], dest='runs',
                   help='One run: "field=value field=value" (repeatable).')
  p = sub.add_parser('summarize')
  p.add_argument('dirs', nargs='+', help='Sweep roots or run workdirs.')
  p.add_argument('--csv', default='', help='Also write the table as CSV here.')
  args = parser.parse_args(argv)

  if args.command == 'summarize':
    columns, rows = summarize(args.dirs)
    print(markdown(columns, rows))
    if args.csv:
      with open(args.csv, 'w') as f:
        f.write(to_csv(columns, rows))
    return 0
  overrides = expand(args.grid, args.runs)
  failed = []
  for (workdir, command), run_overrides in zip(
      commands(args.config, args.root, overrides, extra), overrides):
    print(shlex.join(command), flush=True)
    _write_overrides(workdir, args.config, run_overrides)  # For summarize, however it runs.
    if args.command == 'run' and subprocess.run(command, check=False).returncode != 0:
      failed.append(workdir)
  if failed:
    print(f'{len(failed)} run(s) failed: {failed}', file=sys.stderr)
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
