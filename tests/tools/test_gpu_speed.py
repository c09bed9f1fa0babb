"""benchmarks/gpu_speed.py, the GPU comparison against the PyTorch references, run as a user
runs it but on CPU at a tiny size: both sides time, the figures and MFU reach the JSON. (Its GPU
figures come from running it on a GPU, never from here.)"""

import json
import subprocess
import sys

import pytest

from tests.helpers import run_main

pytest.importorskip('torch')
pytest.importorskip('transformers')


@pytest.mark.slow(40)
def test_the_script_runs_on_cpu_at_a_tiny_size(tmp_path):
  output = tmp_path / 'gpu_speed.json'
  result = subprocess.run(
      [sys.executable, 'benchmarks/gpu_speed.py', '--platform=cpu', '--models=segformer_b0',
       '--dtypes=float32', '--crop=32,32', '--batch_size=2', '--num_classes=3',
       '--torch_compile=false', '--warmup=1', '--rounds=1', '--steps=1', '--peak_tflops=1',
       f'--output={output}'],
      cwd=run_main.REPO, capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  written = json.loads(output.read_text())
  assert written['machine']['device_kind'] == 'cpu' and written['machine']['bf16_peak_tflops'] == 1
  run, = written['results']
  assert (run['model'], run['dtype'], run['reference_device']) == ('segformer_b0', 'float32', 'cpu')
  assert run['ours_params'] == run['reference_params'] == 3_714_915
  assert run['inference_macs_per_image'] > 0
  for kind, forwards in (('train', 3), ('inference', 1)):
    for side in ('ours', 'reference'):
      rate = run[f'{side}_{kind}_images_per_s']
      assert run[f'{side}_{kind}_tflops'] == pytest.approx(
          rate * forwards * 2 * run['inference_macs_per_image'] / 1e12)
      assert run[f'{side}_{kind}_mfu'] == pytest.approx(run[f'{side}_{kind}_tflops'])
  assert 'segformer_b0       float32   train' in result.stdout


def test_without_the_wheels_it_says_how_to_get_them(tmp_path):
  """A Python lacking grain (as the GPU machine's image does) and no wheels to install it
  from: the message names the download command."""
  absent = tmp_path / 'absent'
  script = ('import importlib.util, runpy, sys\n'
            'find_spec = importlib.util.find_spec\n'
            'importlib.util.find_spec = lambda name, *a: (\n'
            '    None if name == "grain" else find_spec(name, *a))\n'
            f'sys.argv = ["gpu_speed.py", "--platform=cpu", "--wheels={absent}"]\n'
            'runpy.run_path("benchmarks/gpu_speed.py", run_name="__main__")\n')
  result = subprocess.run([sys.executable, '-c', script], cwd=run_main.REPO,
                          capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 1
  assert 'needs grain' in result.stderr and '--download_wheels' in result.stderr
