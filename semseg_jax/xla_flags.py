"""XLA flags that semseg_jax's commands set before jax starts a backend (`main.py`, the tools
under `tools/`, and the test suite): each one where the installed jaxlib knows it and the
user's own XLA_FLAGS does not name it already.

- XLA:CPU (jaxlib 0.10.2 and 0.12.1 checked) hands large convolutions to YNNPACK. On the
  project's 2-core AMD EPYC machines (jaxlib 0.12.1) YNNPACK ran DeepLabV3+'s first ASPP
  convolution (2048 -> 512, 3x3, dilation 12, 2 x 64 x 64) in 3.5 s against 1.0 s for XLA's
  own, and a 512 -> 512 3x3 convolution's input and kernel gradients at 2 x 128 x 128 in 18.6 s
  against 3.2 s; its other fusions (reductions, matrix products) stay. DeepLabV3+ R50's train
  step (batch 2, 512 x 512) took 24-28 s instead of 29-31 s, its inference 6.6 s instead of
  8.7 s (SegFormer-B0, whose convolutions are small or ours, did not move; README, Speed against
  PyTorch). The flag changes nothing off the CPU.
"""

import importlib.metadata
import os

# (flag, value, the first jaxlib that knows the flag: XLA aborts on a flag it does not know).
# jaxlib 0.10.2, requirements.txt's lower bound, knows it and hands large convolutions to YNNPACK
# too (the ASPP convolution above: 1.7 s against XLA's 1.0 s).
DEFAULTS = (
    ('--xla_cpu_experimental_ynn_fusion_type', '-individual_convolution', (0, 10)),
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
