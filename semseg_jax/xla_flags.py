"""XLA flags that semseg_jax's commands set before jax starts a backend (`main.py`, the tools
under `tools/`, and the test suite): each one where the installed jaxlib knows it and the
user's own XLA_FLAGS does not name it already.

- XLA:CPU (jaxlib 0.10.2 and 0.12.1 checked) hands large convolutions and matrix products to
  YNNPACK. On the project's 2-core AMD EPYC machines (jaxlib 0.12.1) YNNPACK ran DeepLabV3+'s
  first ASPP convolution (2048 -> 512, 3x3, dilation 12, 2 x 64 x 64) in 3.5 s against 1.0 s
  for XLA's own, a 512 -> 512 3x3 convolution's input and kernel gradients at 2 x 128 x 128 in
  18.6 s against 3.2 s, and the large matrix products of 1x1 convolutions 25-45% slower than
  XLA's (Eigen's): [8192, 2048] x [2048, 512] 192-210 ms against 121-125 ms, [8192, 1024] x
  [1024, 2048] 375-425 ms against 290-335 ms; products with 32-256 columns took the same either
  way. Its other fusions (reductions, elementwise) stay. With the convolutions off DeepLabV3+
  R50's train step (batch 2, 512 x 512) took 24-28 s instead of 29-31 s and its inference 6.6 s
  instead of 8.7 s; with the products off too, 25.7-30.3 s against 32.9-35.5 s in three pairs
  of runs on a later, slower day, inference unchanged (SegFormer-B0, whose convolutions are
  small or ours, moved by neither; README, Speed against PyTorch). The flag changes nothing off
  the CPU.
"""

import importlib.metadata
import os

# (flag, value, the first jaxlib that knows the flag: XLA aborts on a flag it does not know).
# jaxlib 0.10.2, requirements.txt's lower bound, knows it (and both types) and hands large
# convolutions and products to YNNPACK too (the ASPP convolution above: 1.7 s against XLA's 1.0 s).
# A leading '-' takes one type out of XLA's default set.
DEFAULTS = (
    ('--xla_cpu_experimental_ynn_fusion_type', '-individual_convolution,-individual_dot',
     (0, 10)),
)


def jaxlib_version() -> tuple[int, int]:
  """(major, minor) of the installed jaxlib, read without importing it."""
  return tuple(int(p) for p in importlib.metadata.version('jaxlib').split('.')[:2])


def set_defaults(environ: dict | None = None) -> list[str]:
  """Appends each of DEFAULTS to `environ['XLA_FLAGS']` (os.environ by default) unless that
  already names the flag or the installed jaxlib predates it; returns the flags appended. Call it
  before jax starts a backend (its first computation): XLA reads XLA_FLAGS once."""
  environ = os.environ if environ is None else environ
  present = environ.get('XLA_FLAGS', '').split()
  named = {flag.split('=', 1)[0] for flag in present}
  version = jaxlib_version()
  added = [f'{flag}={value}' for flag, value, since in DEFAULTS
           if flag not in named and version >= since]
  if added:
    environ['XLA_FLAGS'] = ' '.join(present + added)
  return added
