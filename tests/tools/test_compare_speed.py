"""tools/compare_speed.py, the side-by-side timing against the PyTorch references: what it
compares is the same model on both sides, it runs end to end through its command line, and it
says what is missing without PyTorch. (Its figures are measured by running it, never here.)"""

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


@pytest.mark.slow(30)
def test_the_command_times_both_sides_and_writes_json(tmp_path, capsys):
  output = tmp_path / 'speed.json'
  compare_speed.FLAGS(['compare_speed', '--models=segformer_b0', '--crop=32,32',
                       '--num_classes=3', '--warmup=1', '--rounds=1', '--steps=1',
                       f'--output={output}'])
  compare_speed.main([])
  written = json.loads(output.read_text())
  result, = written['results']
  assert result['ours_params'] == result['reference_params'] == 3_714_915
  for kind in ('train', 'inference'):
    rates = [result[f'{side}_{kind}_images_per_s'] for side in ('ours', 'reference')]
    assert min(rates) > 0 and result[f'{kind}_ratio'] == pytest.approx(rates[0] / rates[1])
  assert written['machine']['torch'] == torch.__version__
  assert 'segformer_b0         train' in capsys.readouterr().out


def test_without_torch_it_says_what_to_install(monkeypatch):
  monkeypatch.setattr(compare_speed, 'torch', None)
  monkeypatch.setattr(compare_speed, '_MISSING', ImportError("No module named 'torch'"),
                      raising=False)
  with pytest.raises(SystemExit, match=r'pip install -e "\.\[torch\]"'):
    compare_speed.main([])
