"""Model size and compute without running the model: parameter counts, and multiply-adds counted
from the traced program (no compilation, so any model at any resolution costs a trace).

Multiply-adds (MACs) are those of convolutions and matrix products, the convention of the
"FLOPs" in mmsegmentation's, fvcore's and most papers' tables (one multiply-add = one "FLOP");
XLA's cost analysis counts 2 per multiply-add and adds elementwise work. A transposed
convolution counts the products with real input values (XLA runs it over the input dilated by
its stride, whose zeros it multiplies too), as fvcore counts it.
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models import layers


def count_params(params: Any) -> int:
  """Number of scalars in a parameter tree (or its abstract shapes)."""
  return sum(math.prod(x.shape) for x in jax.tree.leaves(params))


def abstract_variables(model: nn.Module, input_hw: tuple[int, int]) -> Any:
  """The model's variables as shapes only (nothing is computed; traced with XLA's
  convolutions, the shortest form)."""
  images = jax.ShapeDtypeStruct((1, *input_hw, 3), jnp.float32)
  rngs = {'params': jax.random.key(0), 'dropout': jax.random.key(1)}
  with layers.conv_lowering('xla'):
    return jax.eval_shape(lambda x: model.init(rngs, x, train=False), images)


def _eqn_macs(eqn: Any) -> int:
  name = eqn.primitive.name
  if name == 'conv_general_dilated':
    rhs = eqn.invars[1].aval.shape
    rhs_spec = eqn.params['dimension_numbers'].rhs_spec  # (out feature, in feature, spatial...)
    per_output = rhs[rhs_spec[1]] * math.prod(rhs[d] for d in rhs_spec[2:])
    # A transposed conv runs over its input dilated by the stride: only 1 / prod(stride) of
    # those products touch real input values (fvcore's count).
    dilated = math.prod(eqn.params.get('lhs_dilation') or (1,))
    return math.prod(eqn.outvars[0].aval.shape) * per_output // dilated
  if name == 'dot_general':
    (contract_lhs, _), _ = eqn.params['dimension_numbers']
    lhs = eqn.invars[0].aval.shape
    return math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in contract_lhs)
  return 0


def _sub_jaxprs(value: Any):
  if hasattr(value, 'jaxpr') and hasattr(value, 'consts'):  # ClosedJaxpr
    yield value.jaxpr
  elif hasattr(value, 'eqns'):  # Jaxpr
    yield value
  elif isinstance(value, (tuple, list)):
    for v in value:
      yield from _sub_jaxprs(v)


def jaxpr_macs(jaxpr: Any) -> int:
  """Multiply-adds of convolutions and matrix products in a jaxpr, through nested calls; a scan
  body counts once per iteration, a conditional by its costliest branch. Resizes and pools
  (layers.RESAMPLING_SCOPE) are left out, as fvcore's and mmcv's counters leave them out."""
  total = 0
  for eqn in jaxpr.eqns:
    if layers.RESAMPLING_SCOPE in str(eqn.source_info.name_stack).split('/'):
      continue  # A resize or pool computed as a matrix product.
    total += _eqn_macs(eqn)
    if eqn.primitive.name == 'cond':
      total += max(jaxpr_macs(b.jaxpr) for b in eqn.params['branches'])
      continue
    repeat = eqn.params.get('length', 1) if eqn.primitive.name == 'scan' else 1
    for value in eqn.params.values():
      for sub in _sub_jaxprs(value):
        total += repeat * jaxpr_macs(sub)
  return total


def inference_macs(model: nn.Module, input_hw: tuple[int, int], variables: Any = None) -> int:
  """Multiply-adds of one image's inference (train=False) at `input_hw`, counted on the
  convolutions as XLA's (`layers.conv_lowering('xla')`: a depthwise convolution counts its
  multiply-adds whichever way the backend computes it)."""
  if variables is None:
    variables = abstract_variables(model, input_hw)
  images = jax.ShapeDtypeStruct((1, *input_hw, 3), jnp.float32)
  with layers.conv_lowering('xla'):
    closed = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, images)
  return jaxpr_macs(closed.jaxpr)
