"""How long each zoo model's train step takes to trace and compile, on this machine:

  python -m semseg_jax.tools.compile_times [--only=cityscapes_pspnet:r50,...] [--table_json=F]
      [--scan_min_depth=N]

One row per model and variant of the README's model table (the first config that names it):
the training loop's own jitted step (train_step.make_train_step, the config's optimizer, losses
and auxiliary heads) for the config's batch and crop on this process's devices, lowered from
abstract inputs (nothing is allocated or run) and compiled with the XLA flags `main.py` runs
with (`xla_flags.py`). Prints a markdown table (trace + lower seconds, compile seconds, total)
and writes JSON.
--scan_min_depth=N compiles the models that have the option (SCANNABLE) with their stages of N
or more blocks scanned (layers.repeated_blocks), the others as they are.
"""

import json
import platform
import time

from semseg_jax import xla_flags

xla_flags.set_defaults()  # Before jax starts a backend (main.py's flags).

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags  # pylint: disable=g-import-not-at-top
import jax  # pylint: disable=g-import-not-at-top
import ml_collections  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from semseg_jax import sharding
from semseg_jax import train_state
from semseg_jax import train_step
from semseg_jax.tools import model_table

FLAGS = flags.FLAGS
flags.DEFINE_list('only', [], 'config:argument entries to time (default: every model).')
flags.DEFINE_string('table_json', 'compile_times.json', 'Where the table is written (JSON).')
flags.DEFINE_integer('scan_min_depth', 0, 'Scan the stages of at least this many blocks of the '
                     'models that can (SCANNABLE); 0: every model as configured.')

SCANNABLE = ('segformer', 'segnext')  # Models with the scan_min_depth field.


def entries() -> list[tuple[str, str, int]]:
  """(config, argument, classes) of every model and variant: the model table's first row of
  each."""
  seen, found = set(), []
  for row in model_table.ROWS:
    config = model_table.load_config(row.config, row.argument)
    key = (config.model.name, config.model.variant)
    if key not in seen:
      seen.add(key)
      found.append((row.config, row.argument, row.num_classes))
  return found


def time_train_step(config: ml_collections.ConfigDict, num_classes: int) -> dict:
  """Seconds to trace and lower, and to compile, the train step of `config`."""
  mesh = sharding.make_mesh(config.mesh)
  crop = tuple(config.augment.crop_size)
  model, tx, schedule = train_state.build_model_and_optimizer(config, num_classes)
  state, shardings = train_state.abstract_train_state(model, tx, crop, mesh,
                                                      config.mesh.partition_rules)
  batch_sharding = sharding.batch_sharding(mesh, tuple(config.mesh.data_axes))
  n = config.train.batch_size
  batch = {'image': jax.ShapeDtypeStruct((n, *crop, 3), np.float32, sharding=batch_sharding),
           'label': jax.ShapeDtypeStruct((n, *crop), np.int32, sharding=batch_sharding)}
  step = train_step.make_train_step(model, tx, schedule, config, shardings, mesh)
  start = time.perf_counter()
  lowered = step.lower(state, batch)
  lowered_at = time.perf_counter()
  lowered.compile()
  done = time.perf_counter()
  return {'model': f'{config.model.name}-{config.model.variant}', 'batch': n, 'crop': list(crop),
          'dtype': config.model.dtype, 'trace_and_lower_s': lowered_at - start,
          'compile_s': done - lowered_at, 'total_s': done - start}


def main(argv: list[str]) -> None:
  del argv
  todo = entries()
  if FLAGS.only:
    known = {f'{c}:{a}' if a else c: (c, a, k) for c, a, k in todo}
    unknown = [name for name in FLAGS.only if name not in known]
    if unknown:
      raise app.UsageError(f'--only: unknown {", ".join(unknown)}; known: {", ".join(known)}.')
    todo = [known[name] for name in FLAGS.only]
  machine = {'platform': platform.platform(), 'jax': jax.__version__,
             'devices': f'{jax.device_count()} x {jax.devices()[0].device_kind}'}
  print(json.dumps(machine))
  print('| model | config | batch x crop | trace + lower (s) | compile (s) | total (s) |\n'
        '|---|---|---|---|---|---|', flush=True)
  rows = []
  for config_name, argument, num_classes in todo:
    config = model_table.load_config(config_name, argument)
    scan = FLAGS.scan_min_depth if config.model.name in SCANNABLE else 0
    if scan:
      config.model.overrides = (*config.model.overrides, ('scan_min_depth', scan))
    row = {'config': f'{config_name}:{argument}' if argument else config_name,
           **time_train_step(config, num_classes), 'scan_min_depth': scan}
    rows.append(row)
    scanned = f' (scan {scan})' if scan else ''
    print(f'| {row["model"]}{scanned} | `{row["config"]}` | {row["batch"]}x{row["crop"][0]}x'
          f'{row["crop"][1]} | {row["trace_and_lower_s"]:.1f} | {row["compile_s"]:.1f} | '
          f'{row["total_s"]:.1f} |', flush=True)
    with open(FLAGS.table_json, 'w') as f:  # After each row: a run cut short keeps its figures.
      json.dump({'machine': machine, 'rows': rows}, f, indent=1)
  slowest = max(rows, key=lambda r: r['total_s'])
  print(f'Slowest: {slowest["model"]} ({slowest["total_s"]:.1f} s). '
        f'Written to {FLAGS.table_json}.')


if __name__ == '__main__':
  app.run(main)
