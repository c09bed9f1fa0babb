"""tools/compare_speed.py, the side-by-side timing against the PyTorch references: what it
compares is the same model on both sides, its command line reaches the comparison and reports
each model's figures, and it says what is missing without PyTorch. (Its figures are measured by
running it, never here.)"""

import json

import pytest

from semseg_jax.tools import compare_speed
from semseg_jax.tools import model_table

torch = pytest.importorskip('torch')
pytest.importorskip('transformers')


def test_the_torch_deeplabv3plus_has_mmsegs_parameter_count_and_ours():
  from semseg_jax.tools import torch_deeplabv3plus  # pylint: disable=g-import-not-at-top
  row = next(r for r in model_table.ROWS
             if (r.config, r.argument) == ('cityscapes_deeplabv3plus', 'r50'))
  reference = torch_deeplabv3plus.DeepLabV3PlusR50D8(row.num_classes)
  assert sum(p.numel() for p in reference.parameters()) == row.reference == row.params
  reference.train()
  logits, aux = reference(torch.zeros(2, 3, 64, 64))
  assert logits.shape == (2, row.num_classes, 16, 16) and aux.shape == (2, row.num_classes, 8, 8)


def test_the_command_prints_and_writes_each_models_figures(tmp_path, capsys, monkeypatch):
  """Its flags reach `compare` (which benchmarks/gpu_speed.py's test runs end to end, both
  sides timed) and each model's figures reach the table and the JSON."""
  calls = []

  def compare(name, batch_size, crop, num_classes, dtype, lr, weight_decay, warmup, rounds,
              steps):
    calls.append((name, batch_size, crop, num_classes, dtype, lr, weight_decay, warmup, rounds,
                  steps))
    return {'model': name, 'ours_train_images_per_s': 3.0, 'reference_train_images_per_s': 2.0,
            'train_ratio': 1.5, 'ours_inference_images_per_s': 4.0,
            'reference_inference_images_per_s': 8.0, 'inference_ratio': 0.5}

  monkeypatch.setattr(compare_speed, 'compare', compare)
  output = tmp_path / 'speed.json'
  compare_speed.FLAGS(['compare_speed', '--models=segformer_b0,deeplabv3plus_r50',
                       '--crop=32,48', '--num_classes=3', '--batch_size=4', '--warmup=1',
                       '--rounds=2', '--steps=5', '--dtype=bfloat16', f'--output={output}'])
  compare_speed.main([])
  assert calls == [(name, 4, (32, 48), 3, 'bfloat16', 6e-5, 0.01, 1, 2, 5)
                   for name in ('segformer_b0', 'deeplabv3plus_r50')]
  written = json.loads(output.read_text())
  assert [r['model'] for r in written['results']] == ['segformer_b0', 'deeplabv3plus_r50']
  assert written['machine']['torch'] == torch.__version__
  out = capsys.readouterr().out
  assert 'segformer_b0         train            3.000       2.000    1.50' in out
  assert 'deeplabv3plus_r50    inference        4.000       8.000    0.50' in out


def test_without_torch_it_says_what_to_install(monkeypatch):
  monkeypatch.setattr(compare_speed, 'torch', None)
  monkeypatch.setattr(compare_speed, '_MISSING', ImportError("No module named 'torch'"),
                      raising=False)
  with pytest.raises(SystemExit, match=r'pip install -e "\.\[torch\]"'):
    compare_speed.main([])
