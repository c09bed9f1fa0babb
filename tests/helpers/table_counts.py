"""The README model table's parameter counts, by model: what a model file's full-size counts
check without building the model again (tests/models/test_zoo.py builds every row's model from
its config and checks its count; a file builds only the sizes the table does not hold)."""

import functools

import ml_collections

from semseg_jax.tools import model_table


@functools.cache
def _row_models() -> tuple[tuple[model_table.Row, ml_collections.ConfigDict], ...]:
  """Every row with its config's model fields (each config loaded once per process)."""
  return tuple((row, model_table.load_config(row.config, row.argument).model)
               for row in model_table.ROWS)


@functools.cache
def table_counts(model_name: str, aux_head: bool = True) -> dict[tuple[str, int], int]:
  """{(variant, classes): our count} of the table's rows whose config builds `model_name` with
  that `config.model.aux_head` and no constructor overrides."""
  return {(model.variant, row.num_classes): row.params for row, model in _row_models()
          if model.name == model_name and model.aux_head == aux_head and not model.overrides}
