"""The README model table's parameter counts, by model: what a model file's full-size counts
check without building the model again (tests/models/test_zoo.py builds every row's model from
its config and checks its count; a file builds only the sizes the table does not hold)."""

import functools

from semseg_jax.tools import model_table


@functools.cache
def table_counts(model_name: str, aux_head: bool = True) -> dict[tuple[str, int], int]:
  """{(variant, classes): our count} of the table's rows whose config builds `model_name` with
  that `config.model.aux_head` and no constructor overrides."""
  counts = {}
  for row in model_table.ROWS:
    model = model_table.load_config(row.config, row.argument).model
    if model.name == model_name and model.aux_head == aux_head and not model.overrides:
      counts[(model.variant, row.num_classes)] = row.params
  return counts
