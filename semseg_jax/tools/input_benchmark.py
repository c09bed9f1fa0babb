"""--mode=data_benchmark, the input-pipeline benchmark: training images/s (read + decode +
augment + batch) at the config's settings, on one core and with several worker-process counts.

The single-core figure runs the pipeline in this process with one read thread (and OpenCV on
one thread): images/s per CPU core, the number to compare with the goal of 10 Cityscapes-size
images/s per core. Then for each N in config.benchmark.data_workers the real pipeline with N
grain worker processes (config.data.num_workers = N), whose per-core figure divides by the
cores it can keep busy: min(CPU cores, N x config.data.prefetch_batches read threads). Each
measurement skips config.benchmark.data_warmup_batches batches, then times
config.benchmark.data_batches.
"""

import json
import os
import time
from typing import Any

from absl import logging
import cv2
import jax
import ml_collections

from semseg_jax.data import datasets
from semseg_jax.data import pipeline


def images_per_second(config: ml_collections.ConfigDict, source: Any, warmup: int,
                      batches: int) -> float:
  """Training images/s of pipeline.train_dataset with config.data as given."""
  iterator = iter(pipeline.train_dataset(config, source))
  for _ in range(warmup):
    next(iterator)
  start = time.perf_counter()
  for _ in range(batches):
    next(iterator)
  elapsed = time.perf_counter() - start
  del iterator  # Stops worker processes before the next measurement.
  return batches * config.train.batch_size / elapsed


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Prints and returns images/s per setting; writes <workdir>/data_benchmark.json."""
  bench = config.benchmark
  source = datasets.make_source(config.data, config.data.train_split, config.seed)
  cores = os.cpu_count() or 1
  sizes = [source.image_size(i) for i in range(min(len(source), 8))]
  results = {
      'dataset': config.data.name, 'split': config.data.train_split, 'examples': len(source),
      'first_image_sizes': sizes, 'crop': list(config.augment.crop_size),
      'resize_scale': list(config.augment.resize_scale), 'batch_size': config.train.batch_size,
      'cpu_cores': cores, 'runs': [],
  }
  settings = [('single core (in process, 1 thread)', 0)] + [
      (f'{n} worker process(es)', n) for n in bench.data_workers]
  for label, workers in settings:
    run_config = config.copy_and_resolve_references()
    with run_config.unlocked():
      run_config.data.num_workers = workers
      if workers == 0:
        run_config.data.prefetch_batches = 1
    threads = cv2.getNumThreads()
    if workers == 0:
      cv2.setNumThreads(1)
    try:
      rate = images_per_second(run_config, source, bench.data_warmup_batches, bench.data_batches)
    finally:
      cv2.setNumThreads(threads)
    # Cores a run can keep busy: each worker reads with prefetch_batches threads.
    used = 1 if workers == 0 else min(cores, workers * max(1, config.data.prefetch_batches))
    results['runs'].append({'setting': label, 'workers': workers, 'images_per_s': rate,
                            'images_per_s_per_core': rate / used})
    logging.info('%s: %.2f images/s (%.2f per core).', label, rate, rate / used)
  augment = config.augment
  lines = [f'Training pipeline of {config.data.name} {config.data.train_split} '
           f'({len(source)} examples, first sizes {sizes[:3]}); crop '
           f'{tuple(augment.crop_size)}, resize_scale {tuple(augment.resize_scale)}, batch '
           f'{config.train.batch_size}, {cores} CPU cores:']
  lines += [f'  {r["setting"]:<36} {r["images_per_s"]:8.2f} images/s '
            f'{r["images_per_s_per_core"]:8.2f} per core' for r in results['runs']]
  print('\n'.join(lines), flush=True)
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, 'data_benchmark.json'), 'w') as f:
      json.dump(results, f, indent=1)
  return results
