"""SegFormer-B2 and DeepLabV3+ R50-D8 on one GPU, ours against PyTorch, float32 and bfloat16:
images/s of train steps and inference, ours / reference, and model FLOP utilisation (MFU).

On a GPU machine, from the repository root (about 6 minutes on an H100; no network needed):

  python benchmarks/gpu_speed.py --output=gpu_speed.json

Each model and dtype goes through `semseg_jax.tools.compare_speed.compare` (interleaved rounds
after warm-up, median round; the same batch, crop, classes, AdamW and loss on both sides). The
PyTorch side runs on CUDA through `torch.compile`, in the channels-last memory format for the
convolutional network, under autocast for bfloat16; ours keeps float32 parameters and computes
in bfloat16 (`config.model.dtype`), with cuDNN attention there (`models.layers.attention`). MFU
is the train step's model FLOPs (3 x 2 x the inference multiply-adds per image, counted on the
float32 model's jaxpr by `tools.model_stats`) per second over the chip's dense bfloat16 peak
(--peak_tflops, or looked up from the device name), for both sides.

The machine needs jax for its GPU, flax, optax, orbax-checkpoint, numpy, torch and transformers.
What else the path imports (grain, ml_collections, and grain's array_record, cloudpickle and
portpicker) is installed offline from benchmarks/wheels/ into benchmarks/.packages/ when
missing; fetch those wheels once on a machine that reaches the package index, then carry the
folder with the working tree:

  python benchmarks/gpu_speed.py --download_wheels

The same script runs on CPU at tiny sizes (the test suite does):

  python benchmarks/gpu_speed.py --platform=cpu --models=segformer_b0 --crop=32,32 \\
      --batch_size=1 --dtypes=float32 --torch_compile=false --warmup=1 --rounds=1 --steps=1
"""

import argparse
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Imported on the comparison's path but absent from the GPU machine's image: (import name,
# requirement as pinned in requirements.txt's range, for the download).
EXTRA_PACKAGES = (('grain', 'grain==0.2.18'), ('ml_collections', 'ml_collections==1.1.0'),
                  ('array_record', 'array_record==0.8.6'), ('cloudpickle', 'cloudpickle'),
                  ('portpicker', 'portpicker'))
# Dense bfloat16 tensor-core peaks (TFLOP/s, without sparsity) by device-name fragment.
BF16_PEAK_TFLOPS = (('H200', 989.4), ('H100 PCIe', 756.0), ('H100', 989.4), ('A100', 312.0),
                    ('L4', 121.0))
# The reference's memory format: channels-last for the convolutional network (cuDNN's
# preferred layout for tensor cores), the default for the transformer.
CHANNELS_LAST = {'segformer_b0': False, 'segformer_b2': False, 'deeplabv3plus_r50': True}


def parse_args(argv: list[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--platform', default='cuda', choices=['cuda', 'cpu'],
                      help="jax's platform and the reference's device.")
  parser.add_argument('--models', default='segformer_b2,deeplabv3plus_r50',
                      help='Comma-separated: segformer_b0, segformer_b2, deeplabv3plus_r50.')
  parser.add_argument('--dtypes', default='float32,bfloat16', help='Comma-separated.')
  parser.add_argument('--batch_size', type=int, default=8)
  parser.add_argument('--crop', default='512,512', help='height,width.')
  parser.add_argument('--num_classes', type=int, default=150)
  parser.add_argument('--torch_compile', default='true', choices=['true', 'false'],
                      help="The reference through torch.compile (the default inductor mode).")
  parser.add_argument('--warmup', type=int, default=2, help='Untimed steps of each kind.')
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--steps', type=int, default=5, help='Steps per round and kind.')
  parser.add_argument('--peak_tflops', type=float, default=0.0,
                      help='Dense bfloat16 peak of the chip; 0: from the device name.')
  parser.add_argument('--output', default='gpu_speed.json')
  parser.add_argument('--wheels', default=os.path.join(REPO, 'benchmarks', 'wheels'),
                      help='Where the wheels of the packages the GPU machine lacks are.')
  parser.add_argument('--download_wheels', action='store_true',
                      help='Fetch those wheels into --wheels and exit.')
  return parser.parse_args(argv)


def download_wheels(wheels: str) -> None:
  """The wheels of EXTRA_PACKAGES for the GPU machine (CPython 3.12, x86-64 Linux)."""
  command = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--only-binary=:all:',
             '--python-version', '3.12', '--platform', 'manylinux_2_28_x86_64',
             '--platform', 'manylinux2014_x86_64', '-d', wheels,
             *[requirement for _, requirement in EXTRA_PACKAGES]]
  subprocess.run(command, check=True)
  print(f'Wheels in {wheels}: {sorted(os.listdir(wheels))}')


def install_missing(wheels: str) -> None:
  """Installs the EXTRA_PACKAGES this Python cannot import, offline from `wheels`, into
  benchmarks/.packages (put first on sys.path): the machine's own environment is left alone
  (and may be one pip refuses to change)."""
  target = os.path.join(REPO, 'benchmarks', '.packages')
  if os.path.isdir(target):
    sys.path.insert(0, target)
  missing = [(name, requirement) for name, requirement in EXTRA_PACKAGES
             if importlib.util.find_spec(name) is None]
  if not missing:
    return
  names = ', '.join(name for name, _ in missing)
  if not os.path.isdir(wheels):
    sys.exit(f'gpu_speed needs {names}, which this Python lacks, and finds no {wheels} to '
             f'install them from offline: run `python benchmarks/gpu_speed.py '
             f'--download_wheels` where the package index is reachable, and bring the folder.')
  print(f'Installing {names} from {wheels} into {target} (offline).', flush=True)
  subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-index', '--no-deps',
                  '--find-links', wheels, '--target', target,
                  *[requirement for _, requirement in missing]], check=True)
  if target not in sys.path:
    sys.path.insert(0, target)
  importlib.invalidate_caches()


def peak_tflops(device_kind: str, given: float) -> float | None:
  if given:
    return given
  return next((peak for fragment, peak in BF16_PEAK_TFLOPS if fragment in device_kind), None)


def main(argv: list[str]) -> None:
  args = parse_args(argv)
  if args.download_wheels:
    download_wheels(args.wheels)
    return
  os.environ['JAX_PLATFORMS'] = args.platform  # Before jax is imported.
  install_missing(args.wheels)
  sys.path.insert(0, REPO)
  import jax  # pylint: disable=g-import-not-at-top
  from semseg_jax.tools import compare_speed  # pylint: disable=g-import-not-at-top

  if compare_speed.torch is None:
    sys.exit('gpu_speed needs PyTorch and transformers, the references it times.')
  models = args.models.split(',')
  unknown = [m for m in models if m not in compare_speed.PAIRS]
  if unknown:
    sys.exit(f'--models: unknown {", ".join(unknown)}; known: {", ".join(compare_speed.PAIRS)}.')
  crop = tuple(int(c) for c in args.crop.split(','))
  device = 'cuda' if args.platform == 'cuda' else 'cpu'
  if device == 'cuda':
    # float32 on both sides as jax computes it by default on these GPUs: float32 storage,
    # TF32 tensor-core products (PyTorch's default keeps full float32 matrix products).
    compare_speed.torch.backends.cuda.matmul.allow_tf32 = True
    compare_speed.torch.backends.cudnn.allow_tf32 = True
    compare_speed.torch.backends.cudnn.benchmark = True
  kind = jax.devices()[0].device_kind
  peak = peak_tflops(kind, args.peak_tflops)
  header = {**compare_speed.machine(), 'device_kind': kind, 'bf16_peak_tflops': peak}
  if device == 'cuda':
    header['torch_cuda'] = compare_speed.torch.version.cuda
  print(json.dumps(header), flush=True)
  print(f'{"model":18s} {"dtype":9s} {"kind":10s} {"ours img/s":>10s} {"reference":>10s} '
        f'{"ratio":>6s} {"MFU ours":>9s} {"MFU ref":>8s}', flush=True)
  results = []
  start = time.perf_counter()
  for name in models:
    for dtype in args.dtypes.split(','):
      result = compare_speed.compare(
          name, args.batch_size, crop, args.num_classes, dtype, lr=6e-5, weight_decay=0.01,
          warmup=args.warmup, rounds=args.rounds, steps=args.steps, device=device,
          torch_compile=args.torch_compile == 'true', channels_last=CHANNELS_LAST[name])
      # Model FLOPs per image: 2 per multiply-add; a train step is ~3 forwards' worth.
      macs = result['inference_macs_per_image']  # Of the float32 model (compare_speed.ours).
      flops = {'train': 3 * 2 * macs, 'inference': 2 * macs}
      for step_kind in ('train', 'inference'):
        for side in ('ours', 'reference'):
          rate = result[f'{side}_{step_kind}_images_per_s']
          result[f'{side}_{step_kind}_tflops'] = rate * flops[step_kind] / 1e12
          result[f'{side}_{step_kind}_mfu'] = (result[f'{side}_{step_kind}_tflops'] / peak
                                               if peak else None)
        mfu = [result[f'{side}_{step_kind}_mfu'] for side in ('ours', 'reference')]
        mfu_text = ' '.join(f'{m:9.1%}' if m is not None else f'{"-":>9s}' for m in mfu)
        print(f'{name:18s} {dtype:9s} {step_kind:10s} '
              f'{result[f"ours_{step_kind}_images_per_s"]:10.2f} '
              f'{result[f"reference_{step_kind}_images_per_s"]:10.2f} '
              f'{result[f"{step_kind}_ratio"]:6.2f} {mfu_text}', flush=True)
      results.append(result)
      with open(args.output, 'w') as f:  # After each model: a run cut short keeps its figures.
        json.dump({'machine': header, 'results': results,
                   'seconds': time.perf_counter() - start}, f, indent=1)
  print(f'Written to {args.output} ({time.perf_counter() - start:.0f} s).')


if __name__ == '__main__':
  main(sys.argv[1:])
