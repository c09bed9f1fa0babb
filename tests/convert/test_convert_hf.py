"""Hugging Face SegFormer and ResNet weights: converted, they compute the reference's function.

Randomly initialised transformers models (every weight and BatchNorm statistic perturbed, so
that no tensor keeps a telling default) are saved the way users get them, read back through
semseg_jax.convert, and compared with the reference's outputs on the same random input, in
float32: max |difference| <= 1e-4 x max |logit|.
"""

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy

from semseg_jax import convert
from semseg_jax.convert import hf_segformer
from semseg_jax.convert import sources
from semseg_jax.models import segformer
from semseg_jax.models import upernet
from semseg_jax.models.backbones import resnet

# The PyTorch references (the [torch] extra); CI's lower-bound job has them (.ci/run).
torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

TOLERANCE = 1e-4
NON_SQUARE = (75, 101)  # Sides that are not multiples of 32.


def perturbed(module: torch.nn.Module, seed: int) -> torch.nn.Module:
  """`module` in eval mode with every floating tensor moved by noise, BatchNorm variances
  kept positive."""
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, tensor in module.state_dict().items():
      if not tensor.is_floating_point():
        continue
      noise = torch.randn(tensor.shape, generator=generator)
      if name.endswith('running_var'):
        tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
      else:
        tensor.add_(0.1 * noise)
  return module.eval()


def random_images(hw: tuple[int, int], seed: int) -> np.ndarray:
  return np.random.RandomState(seed).randn(1, *hw, 3).astype(np.float32)


def nchw(images: np.ndarray) -> torch.Tensor:
  return torch.from_numpy(images.transpose(0, 3, 1, 2).copy())


def assert_close(ours, reference: np.ndarray) -> None:
  ours = np.asarray(ours)
  assert ours.shape == reference.shape
  scale = np.abs(reference).max()
  assert scale > 0.1  # Outputs of a real size, so that the relative bound means something.
  np.testing.assert_array_less(np.abs(ours - reference).max(), TOLERANCE * scale)


def abstract_variables(model, hw=(64, 64)) -> dict:
  return jax.eval_shape(lambda: model.init({'params': jax.random.key(0)},
                                           jnp.zeros((1, *hw, 3)), train=False))


def segformer_config(variant: str, num_labels: int) -> transformers.SegformerConfig:
  size = segformer.SEGFORMER_VARIANTS[variant]
  return transformers.SegformerConfig(depths=list(size['depths']),
                                      hidden_sizes=list(size['widths']),
                                      decoder_hidden_size=size['decoder_dim'],
                                      num_labels=num_labels)


@pytest.mark.parametrize('variant, sizes, seed', [('b0', [(64, 64), NON_SQUARE], 0),
                                                  ('b2', [NON_SQUARE], 1)])
def test_segformer_logits_equal_transformers(tmp_path, variant, sizes, seed):
  torch.manual_seed(seed)
  reference = perturbed(transformers.SegformerForSemanticSegmentation(
      segformer_config(variant, num_labels=7)), seed)
  reference.save_pretrained(tmp_path / 'hf')  # config.json + model.safetensors.
  model = segformer.segformer(variant, 7)
  loaded = convert.load(str(tmp_path / 'hf'), abstract_variables(model), 'model', 'test')
  assert loaded.family == 'hf_segformer' and not loaded.reinitialised
  variables = convert.merge(abstract_variables(model), loaded.arrays)
  apply = jax.jit(lambda v, x: model.apply(v, x, train=False)['logits'])
  for i, hw in enumerate(sizes):
    images = random_images(hw, seed=i)
    with torch.no_grad():
      logits = reference(nchw(images)).logits.numpy().transpose(0, 2, 3, 1)
    assert_close(apply(variables, images), logits)


def test_published_segformer_names_are_the_canonical_ones():
  # transformers 5 renamed SegFormer's modules; the hub's checkpoints keep the old names.
  renamed = {
      'segformer.stages.1.patch_embeddings.proj.weight':
          'segformer.encoder.patch_embeddings.1.proj.weight',
      'segformer.stages.0.patch_embeddings.layer_norm.bias':
          'segformer.encoder.patch_embeddings.0.layer_norm.bias',
      'segformer.stages.2.blocks.3.attention.q_proj.weight':
          'segformer.encoder.block.2.3.attention.self.query.weight',
      'stages.0.blocks.0.attention.sequence_reduction.sequence_reduction.weight':
          'encoder.block.0.0.attention.self.sr.weight',
      'segformer.stages.0.blocks.1.attention.sequence_reduction.layer_norm.weight':
          'segformer.encoder.block.0.1.attention.self.layer_norm.weight',
      'segformer.stages.3.blocks.0.attention.o_proj.bias':
          'segformer.encoder.block.3.0.attention.output.dense.bias',
      'segformer.stages.3.blocks.0.mlp.fc2.bias': 'segformer.encoder.block.3.0.mlp.dense2.bias',
      'segformer.stages.3.blocks.0.mlp.dwconv.dwconv.bias':
          'segformer.encoder.block.3.0.mlp.dwconv.dwconv.bias',
      'segformer.stages.1.blocks.0.layernorm_after.weight':
          'segformer.encoder.block.1.0.layer_norm_2.weight',
      'segformer.stages.3.layer_norm.weight': 'segformer.encoder.layer_norm.3.weight',
      'decode_head.linear_projections.2.proj.weight': 'decode_head.linear_c.2.proj.weight',
      'decode_head.batch_norm.running_var': 'decode_head.batch_norm.running_var',
  }
  for new, published in renamed.items():
    assert hf_segformer.canonical(new) == published
    assert hf_segformer.canonical(published) == published


def test_imagenet_mit_loads_as_the_backbone_only(tmp_path):
  torch.manual_seed(0)
  reference = transformers.SegformerForImageClassification(segformer_config('b0', 10))
  safetensors.numpy.save_file({k: v.numpy() for k, v in reference.state_dict().items()},
                              str(tmp_path / 'mit.safetensors'))
  model = segformer.segformer('b0', 7)
  abstract = abstract_variables(model)
  loaded = convert.load(str(tmp_path / 'mit.safetensors'), abstract, 'backbone', 'test')
  backbone_leaves = [p for p in convert._flat(abstract) if p.split('/')[1] == 'backbone']
  assert sorted(loaded.arrays) == sorted(backbone_leaves)
  query = reference.state_dict()['segformer.stages.1.blocks.0.attention.q_proj.weight'].numpy()
  np.testing.assert_array_equal(
      loaded.arrays['params/backbone/stage2/block0/attn/query/kernel'], query.T)
  with pytest.raises(ValueError, match=r'config.model.backbone_pretrained'):
    convert.load(str(tmp_path / 'mit.safetensors'), abstract, 'model', 'test')


def resnet_config(depth: int) -> transformers.ResNetConfig:
  bottleneck, blocks = resnet.RESNET_DEPTHS[depth]
  return transformers.ResNetConfig(
      depths=list(blocks), layer_type='bottleneck' if bottleneck else 'basic',
      hidden_sizes=list(resnet.resnet_channels(depth)), num_labels=10)


@pytest.mark.parametrize('depth, sizes', [(18, [(64, 64), NON_SQUARE]), (50, [NON_SQUARE])])
def test_resnet_features_and_logits_equal_transformers(tmp_path, depth, sizes):
  torch.manual_seed(depth)
  reference = perturbed(transformers.ResNetForImageClassification(resnet_config(depth)), depth)
  torch.save(reference.state_dict(), tmp_path / 'pytorch_model.bin')
  (tmp_path / 'config.json').write_text(reference.config.to_json_string())
  # Our UPerNet on the torchvision-layout ResNet takes it as its backbone.
  model = upernet.upernet(f'r{depth}v1', 7, channels=16, aux_head=False)
  loaded = convert.load(str(tmp_path), abstract_variables(model), 'backbone', 'test')
  assert loaded.family == 'hf_resnet'
  variables = convert.merge(abstract_variables(model), loaded.arrays)
  backbone = resnet.ResNet(depth, deep_stem=False, output_stride=32)
  backbone_variables = {c: variables[c]['backbone'] for c in ('params', 'batch_stats')}
  apply = jax.jit(lambda v, x: backbone.apply(v, x, train=False))
  weight, bias = (reference.state_dict()[f'classifier.1.{n}'].numpy() for n in ('weight', 'bias'))
  for i, hw in enumerate(sizes):
    images = random_images(hw, seed=i)
    with torch.no_grad():
      out = reference(nchw(images), output_hidden_states=True)
    features = apply(backbone_variables, images)
    for ours, theirs in zip(features, out.hidden_states[1:]):
      assert_close(ours, theirs.numpy().transpose(0, 2, 3, 1))
    logits = np.asarray(features[-1]).mean(axis=(1, 2)) @ weight.T + bias
    assert_close(logits, out.logits.numpy())


@pytest.mark.parametrize('field, value', [('downsample_in_bottleneck', True),
                                          ('hidden_act', 'gelu')])
def test_hf_resnet_computing_another_function_is_refused(tmp_path, field, value):
  """The stride on the first 1x1 conv, or another activation: the same tensors, another
  function."""
  config = resnet_config(18)
  setattr(config, field, value)
  reference = transformers.ResNetModel(config)
  reference.save_pretrained(tmp_path / 'hf')
  model = upernet.upernet('r18v1', 7, channels=16, aux_head=False)
  with pytest.raises(ValueError, match=f'config.json has {field}='):
    convert.load(str(tmp_path / 'hf'), abstract_variables(model), 'backbone', 'test', model)


def _saved_b0(directory, **config_fields) -> str:
  """A SegFormer-B0 directory as save_pretrained writes it, its config.json edited."""
  torch.manual_seed(0)
  transformers.SegformerForSemanticSegmentation(
      segformer_config('b0', 7)).save_pretrained(directory)
  config = json.loads((directory / 'config.json').read_text())
  (directory / 'config.json').write_text(json.dumps({**config, **config_fields}))
  return str(directory)


@pytest.mark.parametrize('fields, message', [
    ({'num_attention_heads': [1, 2, 4, 8]},
     r"num_attention_heads=\[1, 2, 4, 8\], this model num_heads=\[1, 2, 5, 8\]: set "
     r"config.model.overrides=\(\('num_heads', \(1, 2, 4, 8\)\),\)"),
    ({'hidden_act': 'relu'}, "hidden_act='relu'"),
    ({'strides': [4, 2, 2, 1]}, r'strides=\[4, 2, 2, 1\]')])
def test_segformer_config_the_model_cannot_match_is_refused(tmp_path, fields, message):
  """Settings that shapes do not show: heads, activation, strides."""
  source = _saved_b0(tmp_path / 'hf', **fields)
  model = segformer.segformer('b0', 7)
  with pytest.raises(ValueError, match=r"config.model.pretrained='.*hf': config.json has "
                     + message):
    convert.load(source, abstract_variables(model), 'model', 'config.model.pretrained', model)
  # As heads are overridable, the override makes it load.
  if 'num_attention_heads' in fields:
    model = segformer.segformer('b0', 7, num_heads=(1, 2, 4, 8))
    loaded = convert.load(source, abstract_variables(model), 'model', 'test', model)
    assert len(loaded.arrays) == 207


def _b0_state_dict(num_labels: int = 7) -> dict[str, np.ndarray]:
  torch.manual_seed(0)
  reference = transformers.SegformerForSemanticSegmentation(segformer_config('b0', num_labels))
  return {k: v.numpy() for k, v in reference.state_dict().items()}


def _load_dict(tmp_path, state_dict, num_classes=7, name='w.safetensors'):
  safetensors.numpy.save_file(state_dict, str(tmp_path / name))
  model = segformer.segformer('b0', num_classes)
  return convert.load(str(tmp_path / name), abstract_variables(model), 'model',
                      'config.model.pretrained')


def test_every_misfit_is_named(tmp_path):
  state_dict = _b0_state_dict()
  state_dict['decode_head.extra.weight'] = np.zeros(3, np.float32)
  state_dict['segformer.stages.1.blocks.0.mlp.fc1.weight'] = np.zeros((5, 5), np.float32)
  del state_dict['segformer.stages.3.layer_norm.bias']
  with pytest.raises(ValueError) as error:
    _load_dict(tmp_path, state_dict)
  message = str(error.value)
  assert message.startswith('config.model.pretrained: ')
  assert '3 problems' in message
  assert ('segformer.encoder.block.1.0.mlp.dense1.weight: source (5, 5) vs model (64, 256) at '
          'params/backbone/stage2/block0/mlp/fc1/kernel') in message
  assert 'decode_head.extra.weight: in the source, used by nothing here' in message
  assert ('params/backbone/stage4/norm/bias: segformer.encoder.layer_norm.3.bias is not in the '
          'source') in message


def test_another_class_count_reinitialises_the_classifier_only(tmp_path, caplog):
  loaded = _load_dict(tmp_path, _b0_state_dict(num_labels=150), num_classes=7)
  skipped = {'params/decode_head/classifier/kernel', 'params/decode_head/classifier/bias'}
  assert [r.split(' ')[0] for r in loaded.reinitialised] == sorted(skipped)
  assert not skipped & set(loaded.arrays)
  assert len(loaded.arrays) == 207 - 2
  assert '150 classes in the source, 7 here' in caplog.text


def test_unknown_naming_lists_the_known_ones(tmp_path):
  with pytest.raises(ValueError, match=r'unknown naming of its 1 tensors.*Hugging Face SegFormer'):
    _load_dict(tmp_path, {'foo.weight': np.zeros(3, np.float32)})


class _Payload:
  """Pickled objects run code when unpickled: this one would write a file."""

  def __init__(self, path):
    self.path = path

  def __reduce__(self):
    return (open, (self.path, 'w'))


def test_pickles_needing_code_are_refused_and_not_run(tmp_path):
  marker = tmp_path / 'was_run'
  state_dict = {k: torch.from_numpy(v) for k, v in _b0_state_dict().items()}
  torch.save({'state_dict': state_dict, 'meta': _Payload(str(marker))}, tmp_path / 'bad.pth')
  model = segformer.segformer('b0', 7)
  with pytest.raises(ValueError, match=r"bad.pth' needs more than tensors .* not loaded"):
    convert.load(str(tmp_path / 'bad.pth'), abstract_variables(model), 'model', 'test')
  assert not marker.exists()
  # The same weights in a plain (mmseg-style wrapped) checkpoint load.
  torch.save({'state_dict': state_dict, 'meta': {'epoch': 3}}, tmp_path / 'good.pth')
  loaded = convert.load(str(tmp_path / 'good.pth'), abstract_variables(model), 'model', 'test')
  assert len(loaded.arrays) == 207


def test_the_config_an_mmengine_checkpoint_records_is_read(tmp_path):
  """mmengine writes the training config's text as meta['cfg']; a plain state dict has none."""
  tensors = {'decode_head.conv_seg.weight': torch.zeros(3, 4, 1, 1)}
  recorded = "model = dict(decode_head=dict(ham_kwargs=dict(MD_R=16)))"
  torch.save({'state_dict': tensors, 'meta': {'cfg': recorded, 'epoch': 1}}, tmp_path / 'a.pth')
  torch.save(tensors, tmp_path / 'b.pth')
  read = sources.read(str(tmp_path / 'a.pth'), 'test')
  assert read.recorded_config == recorded and list(read.state_dict) == list(tensors)
  assert sources.read(str(tmp_path / 'b.pth'), 'test').recorded_config is None


@pytest.mark.parametrize('version', ['2.5.1', '2.5.1+cpu', '1.13.0', 'unknown'])
def test_pickles_are_refused_with_a_torch_whose_safe_loading_can_be_bypassed(tmp_path,
                                                                           monkeypatch, version):
  """torch < 2.6 can be made to run code by a crafted file even with weights_only=True
  (CVE-2025-32434): such a torch never opens the file."""
  state_dict = {k: torch.from_numpy(v) for k, v in _b0_state_dict().items()}
  torch.save(state_dict, tmp_path / 'w.pth')
  monkeypatch.setattr(torch, '__version__', version)
  monkeypatch.setattr(torch, 'load', lambda *a, **k: pytest.fail('torch.load was called'))
  model = segformer.segformer('b0', 7)
  with pytest.raises(ValueError, match=rf"w.pth' is a PyTorch pickle, and the installed torch "
                                       rf"{re.escape(version)} can be made to run code .* "
                                       r"torch>=2.6, or use a .safetensors file"):
    convert.load(str(tmp_path / 'w.pth'), abstract_variables(model), 'model', 'test')


def test_safetensors_needs_no_torch_and_is_preferred(tmp_path, monkeypatch):
  reference = transformers.SegformerForSemanticSegmentation(segformer_config('b0', 7))
  reference.save_pretrained(tmp_path / 'hf')
  (tmp_path / 'hf' / 'pytorch_model.bin').write_bytes(b'not a pickle')  # Must not be read.
  (tmp_path / 'hf' / 'preprocessor_config.json').write_text(json.dumps(
      {'image_mean': [0.5, 0.5, 0.5], 'image_std': [0.25, 0.5, 0.5], 'rescale_factor': 1 / 255}))
  torch.save(reference.state_dict(), tmp_path / 'w.pth')
  monkeypatch.setitem(__import__('sys').modules, 'torch', None)  # import torch now fails.
  model = segformer.segformer('b0', 7)
  loaded = convert.load(str(tmp_path / 'hf'), abstract_variables(model), 'model', 'test')
  assert len(loaded.arrays) == 207
  assert loaded.preprocessing == dict(mean=(127.5,) * 3, std=(63.75, 127.5, 127.5),
                                      channel_order='rgb')
  with pytest.raises(ValueError, match=r'needs PyTorch .* or convert it to .safetensors'):
    convert.load(str(tmp_path / 'w.pth'), abstract_variables(model), 'model', 'test')


def test_hub_ids_offline_say_so(tmp_path, monkeypatch):
  import huggingface_hub  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv('HF_HUB_OFFLINE', '1')
  monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', True)
  monkeypatch.setenv('HF_HUB_CACHE', str(tmp_path))
  monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_CACHE', str(tmp_path))
  model = segformer.segformer('b0', 7)
  with pytest.raises(ValueError, match=r"config.model.pretrained='nvidia/mit-b0': no such local "
                                       r'path, and could not fetch it .* HF_HUB_OFFLINE is '
                                       r'set.*huggingface-cli'):
    convert.load('nvidia/mit-b0', abstract_variables(model), 'model', 'config.model.pretrained')
  with pytest.raises(FileNotFoundError, match='no such file or directory'):
    convert.load(str(tmp_path / 'nothing.pth'), abstract_variables(model), 'model', 'x')
