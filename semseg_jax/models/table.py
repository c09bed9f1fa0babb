"""The README's model table: every zoo config's parameter count beside its reference's, and
multiply-adds at its benchmark resolution. `python -m semseg_jax.models.table` prints it
(tracing each model once at its config's crop size; nothing is compiled or run).

References: mmsegmentation 1.2.2 models built from its own configs (SyncBN as BN, auxiliary
head included), torchvision 0.28, or the paper; counted with PyTorch 2.13 (sum of numel over
model.parameters()). tests/test_zoo.py checks every count and this table's rows in README.md.
"""

import dataclasses
import importlib

import ml_collections

from semseg_jax import models
from semseg_jax.models import stats

MMSEG = 'mmseg 1.2.2'


@dataclasses.dataclass(frozen=True)
class Row:
  model: str  # As the table names it.
  config: str  # configs/<config>.py
  argument: str  # The config's argument ('' = its default).
  num_classes: int
  params: int  # Ours, at num_classes (checked by tests/test_zoo.py).
  reference: int | None  # The reference's count at num_classes, None where none exists.
  source: str  # Where the reference count comes from.
  explanation: str = ''  # Why ours differs from the reference, where it does.


ROWS: tuple[Row, ...] = ()


def load_config(config: str, argument: str) -> ml_collections.ConfigDict:
  module = importlib.import_module(f'configs.{config}')
  return module.get_config(argument) if argument else module.get_config()


def row_macs(row: Row) -> tuple[int, tuple[int, int]]:
  """Multiply-adds of one image at the config's crop size, and that size."""
  config = load_config(row.config, row.argument)
  hw = tuple(config.augment.crop_size)
  return stats.inference_macs(models.build_model(config.model, row.num_classes), hw), hw


def markdown_rows(with_macs: bool = True) -> list[str]:
  """The table's rows (header included), as README.md holds them."""
  lines = ['| model | config | classes | params (ours) | params (reference) | reference | '
           'GMACs at crop |',
           '|---|---|---|---|---|---|---|']
  for row in ROWS:
    argument = f':{row.argument}' if row.argument else ''
    reference = f'{row.reference:,}' if row.reference else 'none'
    source = row.source + (f' ({row.explanation})' if row.explanation else '')
    line = (f'| {row.model} | `{row.config}.py{argument}` | {row.num_classes} | '
            f'{row.params:,} | {reference} | {source} |')
    if with_macs:
      macs, hw = row_macs(row)
      line += f' {macs / 1e9:.1f} ({hw[0]}x{hw[1]}) |'
    lines.append(line)
  return lines


if __name__ == '__main__':
  print('\n'.join(markdown_rows()))
