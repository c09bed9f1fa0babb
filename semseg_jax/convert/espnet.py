"""The authors' ESPNet / ESPNet-C state dicts (sacmehta/ESPNet, test/Model.py; the published
pretrained/encoder/espnet_p_2_q_*.pth and pretrained/decoder/espnet_p_2_q_*.pth files) for our
models/espnet.py.

Our ESPNet-C layers sit under `backbone/` in both variants; the code's files keep them at the
top (ESPNet-C) or under 'encoder.' (ESPNet). Inside (our path -> the code's key prefix):
  level1/{conv,bn,act}, b{1,2,3}/{bn,act}            -> the same
  level{2,3}_0/{c1,d1,d2,d4,d8,d16}                  -> level{2,3}_0.<conv>.conv
  level{2,3}_0/{bn,act}                              -> level{2,3}_0.{bn,act}
  level{2,3}_block{i}/<conv>                         -> level{2,3}.{i}.<conv>.conv
  level{2,3}_block{i}/{bn,act}                       -> level{2,3}.{i}.bn.{bn,act} (a BR)
  classifier                                         -> classifier.conv
ESPNet's decoder: level3_C -> level3_C.conv; br, conv/{conv,bn,act} -> the same; up_l3 ->
up_l3.0; combine_l2_l3_0 -> combine_l2_l3.0; combine_l2_l3_1 (an ESP module, as a block above)
-> combine_l2_l3.1; up_l2_{0,1} -> up_l2.{0,1}; classifier (the transposed conv) -> classifier.
PReLU slopes are the code's `act.weight`.

The weights were trained on BGR images as (x - mean) / std / 255 (train/Transforms.py,
test/VisualizeResults.py), with 20 outputs (the last for void): build the model with
`--config.model.overrides="(('void_output', True),)"` to load them.
"""

import re

_ESP_CONVS = ('c1', 'd1', 'd2', 'd4', 'd8', 'd16')
_SAME = ('level1', 'b1', 'b2', 'b3', 'br', 'conv')
_DECODER = {'up_l3': 'up_l3.0', 'up_l2_0': 'up_l2.0', 'up_l2_1': 'up_l2.1',
            'combine_l2_l3_0': 'combine_l2_l3.0', 'level3_C': 'level3_C.conv'}

# test/VisualizeResults.py's mean and std (BGR, 0..255), then the code's division by 255.
PREPROCESSING = dict(mean=(72.3923111, 82.90893555, 73.15840149),
                     std=(45.3192215 * 255, 46.15289307 * 255, 44.91483307 * 255),
                     channel_order='bgr')


def detect(keys: set[str]) -> bool:
  """Whether `keys` are an ESPNet-C or ESPNet state dict of the authors' code."""
  return bool({'level2_0.c1.conv.weight', 'encoder.level2_0.c1.conv.weight'} & keys)


def _esp_module(name: str, inner: str, wrapped_norm: bool) -> str | None:
  """An ESP module's part: its convs are C modules ('.conv'); a non-strided one's BN and
  PReLU sit in a BR ('bn.bn', 'bn.act')."""
  if inner in _ESP_CONVS:
    return f'{name}.{inner}.conv'
  if inner in ('bn', 'act'):
    return f'{name}.bn.{inner}' if wrapped_norm else f'{name}.{inner}'
  return None


def backbone_key(path: str) -> str | None:
  """A path under our `backbone` (ESPNet-C) -> the key prefix in an ESPNet-C file."""
  first, _, rest = path.partition('/')
  if first in _SAME[:4]:
    return path.replace('/', '.')
  if first == 'classifier' and not rest:
    return 'classifier.conv'
  strided = re.fullmatch(r'level[23]_0', first)
  if strided is not None:
    return _esp_module(first, rest, wrapped_norm=False)
  block = re.fullmatch(r'(level[23])_block(\d+)', first)
  if block is not None:
    return _esp_module(f'{block.group(1)}.{block.group(2)}', rest, wrapped_norm=True)
  return None


def model_key(path: str, encoder_prefix: str = 'encoder.') -> str | None:
  """Our ESPNet or ESPNet-C path -> the key prefix in the code's file (ESPNet-C's layers under
  `encoder_prefix`: 'encoder.' in ESPNet files, '' in ESPNet-C files)."""
  first, _, rest = path.partition('/')
  if first == 'backbone':
    inner = backbone_key(rest)
    return None if inner is None else encoder_prefix + inner
  if first in _DECODER:
    return _DECODER[first] + ('.' + rest.replace('/', '.') if rest else '')
  if first in ('br', 'conv'):
    return path.replace('/', '.')
  if first == 'classifier' and not rest:
    return 'classifier'
  if first == 'combine_l2_l3_1':
    return _esp_module('combine_l2_l3.1', rest, wrapped_norm=True)
  return None


def model_naming(keys: set[str]):
  """`model_key` for an ESPNet file (ESPNet-C under 'encoder.') or an ESPNet-C file."""
  prefix = 'encoder.' if any(k.startswith('encoder.') for k in keys) else ''
  return lambda path: model_key(path, prefix)
