"""The XLA flags semseg_jax's commands set (semseg_jax/xla_flags.py): added where missing, a user's
own setting kept, and in effect in this process (tests/conftest.py sets them as main.py does)."""

import jax
import jax.numpy as jnp
import pytest

from semseg_jax import xla_flags

YNN = '--xla_cpu_experimental_ynn_fusion_type'
OFF = '-individual_convolution,-individual_dot'  # The two YNNPACK fusion types turned off.


def test_defaults_are_appended_once_and_a_users_own_setting_is_kept():
  environ = {'XLA_FLAGS': '--xla_dump_to=/tmp/x'}
  assert xla_flags.set_defaults(environ) == [f'{YNN}={OFF}']
  assert environ['XLA_FLAGS'] == f'--xla_dump_to=/tmp/x {YNN}={OFF}'
  assert xla_flags.set_defaults(environ) == []  # Named already: nothing twice.
  assert environ['XLA_FLAGS'].count(YNN) == 1
  own = {'XLA_FLAGS': f'{YNN}='}
  assert xla_flags.set_defaults(own) == [] and own['XLA_FLAGS'] == f'{YNN}='
  empty = {}
  xla_flags.set_defaults(empty)
  assert empty['XLA_FLAGS'] == f'{YNN}={OFF}'


def test_a_jaxlib_that_does_not_know_a_flag_does_not_get_it(monkeypatch):
  """XLA aborts the process on a flag it does not know."""
  monkeypatch.setattr(xla_flags, 'jaxlib_version', lambda: (0, 9))
  environ = {'XLA_FLAGS': '--xla_dump_to=/tmp/x'}
  assert xla_flags.set_defaults(environ) == []
  assert environ == {'XLA_FLAGS': '--xla_dump_to=/tmp/x'}


@pytest.mark.skipif(jax.default_backend() != 'cpu', reason='an XLA:CPU flag')
def test_large_convolutions_compile_to_xla_s_own_kernel_not_ynnpack():
  """DeepLabV3+'s first ASPP convolution, compiled from shapes (nothing allocated): by default
  XLA:CPU hands it to YNNPACK, which ran it 3.5x slower than XLA's own on the project's
  machines."""
  x = jax.ShapeDtypeStruct((2, 64, 64, 2048), jnp.float32)
  w = jax.ShapeDtypeStruct((3, 3, 2048, 512), jnp.float32)
  aspp = jax.jit(lambda x, w: jax.lax.conv_general_dilated(
      x, w, (1, 1), [(12, 12), (12, 12)], rhs_dilation=(12, 12),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC')))
  compiled = aspp.lower(x, w).compile().as_text()
  assert ' convolution(' in compiled and '__ynn_fusion' not in compiled


@pytest.mark.skipif(jax.default_backend() != 'cpu', reason='an XLA:CPU flag')
def test_large_matrix_products_compile_to_xla_s_own_kernel_not_ynnpack():
  """DeepLabV3+'s ASPP pointwise convolution as the matrix product it is lowered to, compiled
  from shapes: by default XLA:CPU hands it to YNNPACK, 1.6x slower than Eigen's on the project's
  machines."""
  pixels = jax.ShapeDtypeStruct((8192, 2048), jnp.float32)
  kernel = jax.ShapeDtypeStruct((2048, 512), jnp.float32)
  compiled = jax.jit(jnp.matmul).lower(pixels, kernel).compile().as_text()
  assert ' dot(' in compiled and '__ynn_fusion' not in compiled
