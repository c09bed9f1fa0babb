"""Hugging Face MobileNetV2ForSemanticSegmentation (transformers, fp32, eval mode, random weights
and BatchNorm statistics) against models/deeplabv3_mobilenet.py with its weights converted by
convert/hf_mobilenet_v2.py: the namings cover every tensor and the logits agree."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semseg_jax import convert
from semseg_jax.convert import hf_mobilenet_v2, torch_layout
from semseg_jax.models import deeplabv3_mobilenet

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

NUM_CLASSES = 5
IMAGE_HW = (75, 101)  # Non-square, sides not multiples of 32 (odd sizes at every stride).
RELATIVE_TOLERANCE = 1e-4


def hf_config(depth_multiplier: float, output_stride: int, **fields):
  return transformers.MobileNetV2Config(depth_multiplier=depth_multiplier,
                                        output_stride=output_stride, num_labels=NUM_CLASSES,
                                        classifier_dropout_prob=0.1, **fields)


def random_value(key: str, tensor, generator):
  """A random replacement for one state-dict tensor that keeps activations of order 1: conv
  weights N(0, 1 / fan_in), BN gamma in [0.5, 1.5], running variances in [0.5, 1.5], biases and
  running means N(0, 0.1^2)."""
  shape = tensor.shape
  if key.endswith('convolution.weight'):
    fan_in = math.prod(shape[1:])
    return torch.randn(shape, generator=generator) / math.sqrt(fan_in)
  if key.endswith(('normalization.weight', 'running_var')):
    return 0.5 + torch.rand(shape, generator=generator)
  if key.endswith(('bias', 'running_mean')):
    return 0.1 * torch.randn(shape, generator=generator)
  raise AssertionError(f'unexpected tensor {key}')


def randomise(model, seed: int = 0):
  """Replaces every weight and BN statistic of `model` by `random_value`s; returns it."""
  generator = torch.Generator().manual_seed(seed)
  state = {key: tensor if key.endswith('num_batches_tracked')
           else random_value(key, tensor, generator)
           for key, tensor in model.state_dict().items()}
  model.load_state_dict(state)
  return model


def numpy_state_dict(model) -> dict[str, np.ndarray]:
  return {key: tensor.numpy() for key, tensor in model.state_dict().items()}


def converted(module, state_dict: dict[str, np.ndarray], key_of) -> torch_layout.Conversion:
  """Converts `state_dict` into the variables of `module` (their shapes from eval_shape)."""
  shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, *IMAGE_HW, 3)))
  return torch_layout.convert_state_dict(state_dict, shapes, key_of)


def leaf_count(tree) -> int:
  return len(jax.tree_util.tree_leaves(tree))


def conv_1x1_keys(state_dict: dict[str, np.ndarray], prefix: str = '') -> list[str]:
  return sorted(k for k in state_dict if k.startswith(prefix + 'conv_1x1.')
                and not k.endswith('num_batches_tracked'))


PARITY_CASES = {
    # The google checkpoint's layout: TF padding, output stride 8.
    'tf-padding-os8': ('1.0-os8', {}),
    # Smaller, symmetric padding, output stride 16, the stem's extra expansion, and a final conv
    # of 0.35 x 1280 channels.
    'torch-padding-os16': ('0.35-os16', dict(tf_padding=False, finegrained_output=False,
                                             first_layer_is_expansion=False)),
}


@pytest.mark.parametrize('case', sorted(PARITY_CASES))
def test_logits_match_transformers(case):
  variant, fields = PARITY_CASES[case]
  multiplier, output_stride = deeplabv3_mobilenet.parse_variant(variant)
  reference = randomise(transformers.MobileNetV2ForSemanticSegmentation(
      hf_config(multiplier, output_stride, **fields)).eval())
  model = deeplabv3_mobilenet.deeplabv3_mobilenet(variant, NUM_CLASSES, final_conv=True,
                                                  **fields)
  conversion = converted(model, numpy_state_dict(reference), hf_mobilenet_v2.model_key)
  assert conversion.complete, (conversion.missing, conversion.mismatched, conversion.unused)
  assert len(conversion.assigned) == leaf_count(conversion.variables)

  images = np.random.default_rng(1).normal(size=(2, *IMAGE_HW, 3)).astype(np.float32)
  with torch.no_grad():
    expected = reference(torch.from_numpy(images.transpose(0, 3, 1, 2))).logits.numpy()
  expected = expected.transpose(0, 2, 3, 1)
  logits = np.asarray(jax.jit(model.apply)(conversion.variables, images)['logits'])

  stride_hw = tuple(-(-side // output_stride) for side in IMAGE_HW)
  assert expected.shape == logits.shape == (2, *stride_hw, NUM_CLASSES)  # Not upsampled.
  scale = np.abs(expected).max()
  assert np.ptp(expected, axis=(1, 2)).min() > 0.05 * scale  # Logits vary over the image.
  assert np.abs(logits - expected).max() <= RELATIVE_TOLERANCE * scale


def test_default_model_leaves_out_only_the_final_conv():
  """Without final_conv, HF's unread conv_1x1 is the only thing not converted."""
  reference = transformers.MobileNetV2ForSemanticSegmentation(hf_config(0.35, 8))
  state_dict = numpy_state_dict(reference)
  model = deeplabv3_mobilenet.deeplabv3_mobilenet('0.35-os8', NUM_CLASSES)
  conversion = converted(model, state_dict, hf_mobilenet_v2.model_key)
  assert not conversion.missing and not conversion.mismatched
  assert conversion.unused == conv_1x1_keys(state_dict, 'mobilenet_v2.')
  assert len(conversion.assigned) == leaf_count(conversion.variables)


@pytest.mark.parametrize('final_conv', [False, True])
def test_backbone_from_imagenet_classifier(final_conv):
  """An ImageNet MobileNetV2ForImageClassification fills the backbone through backbone_key;
  only its classifier (and conv_1x1 without final_conv) is left over."""
  reference = transformers.MobileNetV2ForImageClassification(hf_config(0.35, 32))
  prefix = hf_mobilenet_v2.BACKBONE_PREFIX + '.'
  state_dict = {key.removeprefix(prefix): value
                for key, value in numpy_state_dict(reference).items()}
  model = deeplabv3_mobilenet.deeplabv3_mobilenet('0.35-os8', NUM_CLASSES,
                                                  final_conv=final_conv)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *IMAGE_HW, 3)))
  backbone = {collection: tree['backbone'] for collection, tree in shapes.items()}
  conversion = torch_layout.convert_state_dict(state_dict, backbone,
                                               hf_mobilenet_v2.backbone_key)
  assert not conversion.missing and not conversion.mismatched
  leftover = ['classifier.bias', 'classifier.weight']
  assert conversion.unused == sorted(leftover + ([] if final_conv else
                                                 conv_1x1_keys(state_dict)))
  assert len(conversion.assigned) == leaf_count(backbone)


def test_loader_recognises_a_saved_transformers_model(tmp_path):
  """convert.load on a save_pretrained directory: detected as this family, every array of the
  default model filled (the unread conv_1x1 ignored), HF's preprocessing attached."""
  transformers.MobileNetV2ForSemanticSegmentation(hf_config(0.35, 8)).save_pretrained(tmp_path)
  model = deeplabv3_mobilenet.deeplabv3_mobilenet('0.35-os8', NUM_CLASSES)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *IMAGE_HW, 3)))
  loaded = convert.load(str(tmp_path), shapes, 'model', 'config.model.pretrained')
  assert loaded.family == 'hf_mobilenet_v2'
  assert len(loaded.arrays) == leaf_count(shapes)
  assert loaded.preprocessing == hf_mobilenet_v2.PREPROCESSING


def test_config_settings_the_shapes_do_not_show_are_warned_about_or_refused(tmp_path, caplog):
  """Padding, BN epsilon and (whole models) output stride change the function, not the shapes:
  warned about by name. An ImageNet backbone's output stride 32 is the norm, not warned about.
  Another activation is refused."""
  model = deeplabv3_mobilenet.deeplabv3_mobilenet('0.35-os8', NUM_CLASSES)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *IMAGE_HW, 3)))
  segmentation = tmp_path / 'segmentation'
  transformers.MobileNetV2ForSemanticSegmentation(hf_config(
      0.35, 16, tf_padding=False, layer_norm_eps=1e-5)).save_pretrained(segmentation)
  loaded = convert.load(str(segmentation), shapes, 'model', 'config.model.pretrained', model)
  assert len(loaded.arrays) == leaf_count(shapes)
  warned = [r.getMessage() for r in caplog.records if r.levelname == 'WARNING']
  assert len(warned) == 3, warned
  for text in ('tf_padding=False, this model True', 'layer_norm_eps=1e-05, this model 0.001',
               'output_stride=16, this model 8'):
    assert any(text in message for message in warned), (text, warned)
  assert all(message.startswith(f"config.model.pretrained='{segmentation}': config.json has ")
             for message in warned)

  caplog.clear()
  imagenet = tmp_path / 'imagenet'
  transformers.MobileNetV2ForImageClassification(hf_config(0.35, 32)).save_pretrained(imagenet)
  convert.load(str(imagenet), shapes, 'backbone', 'config.model.backbone_pretrained', model)
  assert not [r for r in caplog.records if r.levelname == 'WARNING']

  config = json.loads((imagenet / 'config.json').read_text())
  (imagenet / 'config.json').write_text(json.dumps({**config, 'hidden_act': 'relu'}))
  with pytest.raises(ValueError, match="config.json has hidden_act='relu': our MobileNetV2"):
    convert.load(str(imagenet), shapes, 'backbone', 'config.model.backbone_pretrained', model)


def test_detect_only_this_naming():
  assert hf_mobilenet_v2.detect({'mobilenet_v2.conv_stem.first_conv.convolution.weight'})
  assert hf_mobilenet_v2.detect({'layer.4.conv_3x3.normalization.running_var'})
  assert not hf_mobilenet_v2.detect({'backbone.layer2.0.conv.0.conv.weight',  # mmseg
                                     'mobilevit.encoder.layer.0.layer.0.expand_1x1.'
                                     'convolution.weight'})


def test_strides_and_dilations_follow_transformers():
  """At output stride 8 the dilation doubles after blocks 5 and 12 (HF's loop); at 32 none."""
  arch = deeplabv3_mobilenet.Architecture(output_stride=8)
  assert arch.block_strides_and_dilations() == (
      [(2, 1), (1, 1), (2, 1)] + [(1, 1)] * 3 + [(1, 2)] * 7 + [(1, 4)] * 3)
  arch = deeplabv3_mobilenet.Architecture(output_stride=32)
  assert [s for s, _ in arch.block_strides_and_dilations()] == list(
      deeplabv3_mobilenet.BLOCK_STRIDES)
  assert {d for _, d in arch.block_strides_and_dilations()} == {1}


@pytest.mark.parametrize('variant', ['1.0', 'os8', '1.0-os4', '0-os8', 'mv2-d8', '1.0-os8-x'])
def test_bad_variant_is_named(variant):
  with pytest.raises(ValueError, match=repr(variant)):
    deeplabv3_mobilenet.deeplabv3_mobilenet(variant, NUM_CLASSES)


def test_model_keys():
  key = hf_mobilenet_v2.model_key
  assert key('backbone/conv_stem/first_conv/convolution') == (
      'mobilenet_v2.conv_stem.first_conv.convolution')
  assert key('backbone/layer_15/reduce_1x1/normalization') == (
      'mobilenet_v2.layer.15.reduce_1x1.normalization')
  assert key('segmentation_head/classifier/convolution') == (
      'segmentation_head.classifier.convolution')
  assert key('decode_head/classifier/convolution') is None
  assert hf_mobilenet_v2.backbone_key('layer_0/expand_1x1/convolution') == (
      'layer.0.expand_1x1.convolution')
