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


def test_multi_process_runs_are_recognised_from_flags_or_environment():
  args = sharding.distributed_arguments
  assert args(None, None, None, {}) is None  # One process: no jax.distributed.
  assert args(None, 1, 0, {'SLURM_NTASKS': '1', 'SLURM_JOB_ID': '7'}) is None
  assert args('h:1', 2, 1, {}) == {'coordinator_address': 'h:1', 'num_processes': 2,
                                   'process_id': 1}
  environ = {'JAX_COORDINATOR_ADDRESS': 'n0:12345', 'JAX_NUM_PROCESSES': '4',
             'JAX_PROCESS_ID': '3'}
  assert args(None, None, None, environ) == {'coordinator_address': 'n0:12345',
                                             'num_processes': 4, 'process_id': 3}
  assert args(None, None, None, {'SLURM_NTASKS': '8', 'SLURM_JOB_ID': '7'}) == {}
  assert args(None, None, None, {'TPU_WORKER_HOSTNAMES': 'w0,w1,w2,w3'}) == {}
  assert args(None, None, None, {'TPU_WORKER_HOSTNAMES': 'w0'}) is None  # A single-host VM.
