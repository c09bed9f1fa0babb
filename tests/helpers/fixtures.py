"""Left for tests/test_train.py only: example trees are written by the dataset modules
(`<module>.write_example_tree(directory, config.data)`, `datasets.write_example_tree(config.data,
directory)`). Delete this file once test_train calls ade20k.write_example_tree itself."""

import pathlib

from configs import default
from semseg_jax.data.datasets import ade20k


def make_ade20k_tree(root: pathlib.Path, num_train: int = 4, num_val: int = 3,
                     seed: int = 0) -> pathlib.Path:
  """ade20k.write_example_tree's ADEChallengeData2016 tree (train and val) under `root`."""
  data = default.get_config().data
  data.name = 'ade20k'
  return pathlib.Path(ade20k.write_example_tree(str(root), data, seed=seed,
                                                num_train=num_train, num_val=num_val))
