"""Shared test setup: grain reads absl flags, which pytest never parses; XLA flags and a random
generator that make compiling fast; a persistent XLA compilation cache for this test session
(the end-to-end tests start many processes that compile the same steps: with it, each compiles
once), whose programs each process loads once; slow tests first; shared fixtures."""

import atexit
import os
import pathlib
import shutil
import tempfile

from semseg_jax import xla_flags  # Imports no jax.

# Before anything imports jax; subprocesses (xdist workers too) inherit it through the
# environment. The process that made it removes it at exit (a run leaves ~300 MB otherwise).
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(prefix='semseg_jax_test_xla_cache_')
  atexit.register(shutil.rmtree, os.environ['JAX_COMPILATION_CACHE_DIR'], ignore_errors=True)

# Compile for compile speed, not run speed: the suite's tiny shapes run in milliseconds, while
# XLA's CPU backend spends seconds optimising each of the hundreds of programs the tests compile
# (measured on a tiny SegFormer train step: 9.9 s -> 3.0 s). LLVM without optimisation and the
# classic elemental emitters instead of the fusion emitters; subprocesses inherit the flags
# (tests.helpers.run_main.env only swaps the device count). XLA aborts on a flag it does not
# know: jaxlib 0.11 dropped the fusion-emitter switch (its CPU backend only has those emitters
# now). With the fusion emitters, multi-output fusion (off by default on XLA:CPU) pays: it joins
# sibling kernels that read the same operands, e.g. an optimizer's per-parameter moment and
# parameter updates, and a compile's cost follows its kernel count (a narrow SegFormer-B0's train
# step: 1,132 -> 722 kernels, compile 6.1 s -> 4.7 s on jaxlib 0.12). With 0.10's elemental
# emitters it costs (3.8 s -> 4.4 s), so it is not set there. Recheck the flags when jax moves.
_JAXLIB = xla_flags.jaxlib_version()
COMPILE_FAST_XLA_FLAGS = ('--xla_backend_optimization_level=0',) + (
    ('--xla_cpu_use_fusion_emitters=false',) if _JAXLIB < (0, 11) else
    ('--xla_backend_extra_options=xla_cpu_use_multi_output_fusion',))
os.environ['XLA_FLAGS'] = ' '.join(
    [f for f in os.environ.get('XLA_FLAGS', '').split() if f not in COMPILE_FAST_XLA_FLAGS]
    + list(COMPILE_FAST_XLA_FLAGS))
# And the flags semseg_jax's commands run with, so that the tests compute what users' runs compute.
xla_flags.set_defaults()

# Philox instead of threefry as jax's default generator in the suite and its subprocesses: XLA:CPU
# compiles its bits in about half the time, and drawing the initial values of a model's hundred or
# so parameter arrays is most of what compiling an init costs (a tiny SegFormer's: 1.9 s -> 1.0 s;
# rbg's takes 2.7 s). Nothing in semseg_jax depends on which generator is the default (the one
# fixed draw a model makes, SegNeXt's inference bases, names threefry). Philox does not compile
# for several devices in jax 0.10: tests.helpers.run_main.env(n > 1) sets threefry.
os.environ['JAX_DEFAULT_PRNG_IMPL'] = 'philox2x32'

from absl import flags
import jax
from jax._src import compilation_cache
from jax._src import config as jax_config
import numpy as np
import pytest
from PIL import Image

flags.FLAGS.mark_as_parsed()


def _keep_loaded_executables() -> None:
  """Each executable of the persistent cache is loaded once per process. The end-to-end tests
  run the same programs (the tiny quickstart's init, train and eval steps) in many runs of
  main.run, and each run's new jit reads them from the cache again: an XLA:CPU executable
  loads its hundreds of kernels anew (0.6 s for a narrow SegFormer-B0's train step; ~20 s of
  tests/e2e/test_main.py). The cache key names the program, its devices and its compile options,
  so an executable loaded or compiled under it is the one another read would load. Programs with
  host callbacks (which bind Python functions when loaded) are read as usual."""
  read, write = compilation_cache.get_executable_and_time, compilation_cache.put_executable_and_time
  loaded = {}

  def read_once(cache_key, *args, **kwargs):
    # (compile_options, backend, executable_devices[, host_callbacks]): jax >= 0.11 adds them.
    host_callbacks = args[3] if len(args) > 3 else kwargs.get('host_callbacks', ())
    if host_callbacks:
      return read(cache_key, *args, **kwargs)
    if cache_key not in loaded:
      executable, compile_time = read(cache_key, *args, **kwargs)
      if executable is None:
        return executable, compile_time
      loaded[cache_key] = executable, compile_time
    return loaded[cache_key]

  def write_and_keep(cache_key, module_name, executable, *args, **kwargs):
    write(cache_key, module_name, executable, *args, **kwargs)
    loaded[cache_key] = executable, (args[1] if len(args) > 1 else kwargs['compile_time'])

  compilation_cache.get_executable_and_time = read_once
  compilation_cache.put_executable_and_time = write_and_keep


_keep_loaded_executables()


@pytest.fixture(autouse=True)
def _model_tests_trace_xla_convolutions(request):
  """Model tests trace XLA's convolutions (layers.conv_lowering('xla')) instead of the CPU
  lowerings that 'auto' picks on this backend (depthwise convolutions as shifted multiply-adds,
  wide kernels' gradients as matrix products), which compile 10-20% slower: those lowerings
  are checked against XLA's, values and gradients, in test_layers.py (which picks its
  lowering itself), and the end-to-end tests train with them."""
  if request.path.parent.name != 'models' or request.path.name == 'test_layers.py':
    yield
    return
  from semseg_jax.models import layers  # pylint: disable=g-import-not-at-top
  with layers.conv_lowering('xla'):
    yield


@pytest.fixture(autouse=True)
def _no_cache_writes_for_programs_compiled_once(request):
  """Model tests compile each model's programs once in the whole suite (tests/models/test_zoo.py
  its train step, the model's own file its forward): writing them to the persistent cache
  (serialising and compressing megabytes of kernels) would only cost."""
  if request.path.parent.name != 'models':
    yield
    return
  with jax_config.persistent_cache_min_compile_time_secs(float('inf')):
    yield


def pytest_collection_modifyitems(items) -> None:
  """Tests marked slow(seconds) first, longest first. pytest-xdist hands each worker a
  contiguous share and idle workers steal from the end of another's queue, so the suite then
  ends on short tests instead of one worker finishing a long one alone."""
  def seconds(item) -> float:
    marker = item.get_closest_marker('slow')
    return marker.args[0] if marker else 0
  items.sort(key=seconds, reverse=True)  # Stable: the others keep their order.


@pytest.fixture(scope='session')
def tfds_dir(tmp_path_factory) -> pathlib.Path:
  """A tiny TFDS dataset (image + segmentation_mask with values 1..3, 0 = unlabelled) prepared
  in the array_record format, the way `tfds build` writes any dataset."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  class TinySegmentation(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version('1.0.0')

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          'picture': tfds.features.Image(shape=(None, None, 3)),
          'mask': tfds.features.Image(shape=(None, None, 1)),
      }))

    def _split_generators(self, dl_manager):
      return {'train': self._generate_examples(4, 0), 'test': self._generate_examples(2, 1)}

    def _generate_examples(self, count, seed):
      rng = np.random.default_rng(seed)
      for k in range(count):
        h, w = 9 + k, 12
        # PIL images, which TFDS encodes without TensorFlow (arrays it encodes with it).
        yield k, {'picture': Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)),
                  'mask': Image.fromarray(rng.integers(0, 4, (h, w), dtype=np.uint8))}

  data_dir = tmp_path_factory.mktemp('tfds')
  TinySegmentation(data_dir=str(data_dir), file_format='array_record').download_and_prepare()
  return data_dir
