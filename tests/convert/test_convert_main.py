"""Converting Hugging Face weights with `python -m semseg_jax.convert`, then fine-tuning from
them through semseg_jax.main (in-process), as users do."""

import json
import logging
import pathlib
import subprocess
import sys

import numpy as np
import orbax.checkpoint as ocp
import pytest

from semseg_jax import main
from semseg_jax.data.datasets import synthetic
from tests.helpers import e2e_config
from tests.helpers import run_main

# The PyTorch references (the [torch] extra); CI's lower-bound job has them (.ci/run).
torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

REPO = pathlib.Path(__file__).resolve().parents[2]


def _run(module: str, *flags: str) -> subprocess.CompletedProcess:
  result = subprocess.run([sys.executable, '-m', module, *flags], cwd=REPO, env=run_main.env(1),
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-5000:]
  return result


@pytest.mark.slow(45)
def test_convert_then_finetune_through_main(tmp_path, caplog):
  torch.manual_seed(0)
  reference = transformers.SegformerForSemanticSegmentation(transformers.SegformerConfig(
      num_labels=150))  # SegFormer-B0 as fine-tuned on ADE20K.
  reference.save_pretrained(tmp_path / 'hf')
  (tmp_path / 'hf' / 'preprocessor_config.json').write_text(json.dumps(
      {'image_mean': [0.5, 0.5, 0.5], 'image_std': [0.5, 0.5, 0.5], 'rescale_factor': 1 / 255}))
  tiny = e2e_config.override_flags({k: v for k, v in e2e_config.TINY.items()
                                   if k not in e2e_config.MODEL_FIELDS})  # The B0 itself.

  converted = tmp_path / 'converted'
  result = _run('semseg_jax.convert', f'--src={tmp_path / "hf"}', '--config=configs/quickstart.py',
                f'--out={converted}', '--num_classes=150', *tiny)
  assert '207 arrays from' in result.stderr and 'hf_segformer naming' in result.stderr
  assert json.loads((converted / 'preprocessing.json').read_text()) == dict(
      mean=[127.5] * 3, std=[127.5] * 3, channel_order='rgb')

  # Fine-tune on the synthetic dataset's classes, learning rate 0: the weights stay the
  # converted ones, so the final checkpoint shows where every tensor landed.
  workdir = tmp_path / 'run'
  caplog.set_level(logging.INFO)
  main.run('train', e2e_config.apply(e2e_config.tiny_quickstart('segformer-b0'), {
      'train.num_steps': 2, 'optimizer.lr': 0.0, 'model.pretrained': str(converted)}),
           str(workdir))
  log = caplog.text
  assert 'config.data.mean=(123.675, 116.28, 103.53) -> (127.5, 127.5, 127.5)' in log
  assert (f'params/decode_head/classifier/bias (150 classes in the source, '
          f'{synthetic.NUM_CLASSES} here)') in log

  manager = ocp.CheckpointManager(workdir / 'checkpoints')
  params = manager.restore(2, args=ocp.args.Composite(
      state=ocp.args.StandardRestore()))['state']['params']
  state_dict = {k: v.numpy() for k, v in reference.state_dict().items()}
  np.testing.assert_array_equal(
      params['backbone']['stage3']['block1']['attn']['key']['kernel'],
      state_dict['segformer.stages.2.blocks.1.attention.k_proj.weight'].T)
  np.testing.assert_array_equal(
      params['backbone']['stage1']['patch_embed']['proj']['kernel'],
      state_dict['segformer.stages.0.patch_embeddings.proj.weight'].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(params['decode_head']['linear_fuse']['kernel'][0, 0],
                                state_dict['decode_head.linear_fuse.weight'][:, :, 0, 0].T)
  assert params['decode_head']['classifier']['kernel'].shape[-1] == synthetic.NUM_CLASSES
