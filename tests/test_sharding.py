"""Partition rules: which state leaf is split how (config.mesh.partition_rules)."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from configs import default
from semseg_jax import sharding


@pytest.fixture(scope='module')
def mesh():
  config = default.get_config()
  config.mesh.shape, config.mesh.axes = (1, 1), ('data', 'fsdp')
  return sharding.make_mesh(config.mesh)


def test_fsdp_rule_splits_the_largest_divisible_dimension():
  fake = jax.sharding.AbstractMesh((2, 4), ('data', 'fsdp'))
  rules = (('encoder/.*kernel', 'fsdp'), ('bias$', (None,)), ('.*', 'data'))
  assert sharding.leaf_spec('params/encoder/a/kernel', (3, 3, 32, 64), rules, fake) == P(
      None, None, None, 'fsdp')
  assert sharding.leaf_spec('params/encoder/a/kernel', (3, 3, 6, 5), rules, fake) == P()
  assert sharding.leaf_spec('params/encoder/a/kernel', (8, 8), rules, fake) == P('fsdp', None)
  assert sharding.leaf_spec('params/head/bias', (10,), rules, fake) == P(None)
  assert sharding.leaf_spec('params/head/kernel', (10, 6), rules, fake) == P('data', None)
  assert sharding.leaf_spec('step', (), rules, fake) == P()
  assert sharding.leaf_spec('params/x', (4,), (), fake) == P()  # No rules: replicated.


def test_explicit_specs_are_checked_against_the_leaf():
  fake = jax.sharding.AbstractMesh((2, 4), ('data', 'fsdp'))
  assert sharding.leaf_spec('w', (8, 6), (('w', ('fsdp', 'data')),), fake) == P('fsdp', 'data')
  with pytest.raises(ValueError, match='has 1 entries but w has shape'):
    sharding.leaf_spec('w', (8, 6), (('w', ('fsdp',)),), fake)
  with pytest.raises(ValueError, match='splits a dimension of 6'):
    sharding.leaf_spec('w', (8, 6), (('w', (None, 'fsdp')),), fake)


def test_optimizer_state_follows_its_parameter(mesh):
  state = {'params': {'conv': {'kernel': jax.ShapeDtypeStruct((3, 3, 4, 8), np.float32)}},
           'opt_state': ({'mu': {'conv': {'kernel': jax.ShapeDtypeStruct((3, 3, 4, 8),
                                                                         np.float32)}}},)}
  shardings = sharding.state_shardings(state, mesh, (('conv/kernel', 'fsdp'),))
  assert shardings['params']['conv']['kernel'].spec == P(None, None, None, 'fsdp')
  assert shardings['opt_state'][0]['mu']['conv']['kernel'].spec == P(None, None, None, 'fsdp')
  with pytest.raises(ValueError, match="names axis 'model'"):
    sharding.state_shardings(state, mesh, (('.*', 'model'),))
