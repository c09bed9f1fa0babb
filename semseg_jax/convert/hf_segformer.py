"""Hugging Face SegFormer names: SegformerForSemanticSegmentation (segformer-b*-finetuned-*),
SegformerModel and SegformerForImageClassification (the ImageNet mit-b* encoders).

Names are those of the checkpoints published on the hub (transformers 4), e.g.
'segformer.encoder.block.0.1.attention.self.query'. transformers 5 renamed the modules when it
loads and saves ('segformer.stages.0.blocks.1.attention.q_proj'); `canonical` maps such state
dicts back to the published names, so both read the same way.

`check_config` compares a config.json with our model where shapes cannot tell them apart.
"""

import re
from typing import Any

# transformers 5 name -> published name, applied in order.
_TRANSFORMERS5_RENAMES = (
    (r'(^|\.)stages\.(\d+)\.patch_embeddings\.', r'\1encoder.patch_embeddings.\2.'),
    (r'(^|\.)stages\.(\d+)\.blocks\.', r'\1encoder.block.\2.'),
    (r'(^|\.)stages\.(\d+)\.layer_norm\.', r'\1encoder.layer_norm.\2.'),
    (r'\.attention\.q_proj\.', '.attention.self.query.'),
    (r'\.attention\.k_proj\.', '.attention.self.key.'),
    (r'\.attention\.v_proj\.', '.attention.self.value.'),
    (r'\.attention\.sequence_reduction\.sequence_reduction\.', '.attention.self.sr.'),
    (r'\.attention\.sequence_reduction\.layer_norm\.', '.attention.self.layer_norm.'),
    (r'\.attention\.o_proj\.', '.attention.output.dense.'),
    (r'\.mlp\.fc1\.', '.mlp.dense1.'),
    (r'\.mlp\.fc2\.', '.mlp.dense2.'),
    (r'\.layernorm_before\.', '.layer_norm_1.'),
    (r'\.layernorm_after\.', '.layer_norm_2.'),
    (r'^decode_head\.linear_projections\.', 'decode_head.linear_c.'),
)


def canonical(key: str) -> str:
  """A state-dict key in the published (transformers 4) naming."""
  for pattern, replacement in _TRANSFORMERS5_RENAMES:
    key = re.sub(pattern, replacement, key)
  return key


def detect(keys: set[str]) -> bool:
  return any('encoder.patch_embeddings.' in k for k in keys)


_BLOCK_MODULES = {
    'norm1': 'layer_norm_1', 'norm2': 'layer_norm_2',
    'attn/query': 'attention.self.query', 'attn/key': 'attention.self.key',
    'attn/value': 'attention.self.value', 'attn/sr': 'attention.self.sr',
    'attn/sr_norm': 'attention.self.layer_norm', 'attn/proj': 'attention.output.dense',
    'mlp/fc1': 'mlp.dense1', 'mlp/dwconv': 'mlp.dwconv.dwconv', 'mlp/fc2': 'mlp.dense2',
}


def backbone_key(path: str) -> str | None:
  """Our MixTransformer module path -> SegformerModel's key prefix."""
  match = re.fullmatch(r'stage(\d+)/(.+)', path)
  if not match:
    return None
  stage, rest = int(match.group(1)) - 1, match.group(2)
  if rest == 'norm':
    return f'encoder.layer_norm.{stage}'
  if rest in ('patch_embed/proj', 'patch_embed/norm'):
    return f'encoder.patch_embeddings.{stage}.' + ('proj' if rest.endswith('proj') else
                                                   'layer_norm')
  block = re.fullmatch(r'block(\d+)/(.+)', rest)
  if block and block.group(2) in _BLOCK_MODULES:
    return f'encoder.block.{stage}.{block.group(1)}.{_BLOCK_MODULES[block.group(2)]}'
  return None


def model_key(path: str) -> str | None:
  """Our SegFormer module path -> SegformerForSemanticSegmentation's key prefix."""
  if path.startswith('backbone/'):
    inner = backbone_key(path[len('backbone/'):])
    return None if inner is None else 'segformer.' + inner
  head = {'decode_head/linear_fuse': 'decode_head.linear_fuse',
          'decode_head/fuse_norm': 'decode_head.batch_norm',
          'decode_head/classifier': 'decode_head.classifier'}
  if path in head:
    return head[path]
  match = re.fullmatch(r'decode_head/linear_c(\d+)', path)
  return f'decode_head.linear_c.{int(match.group(1)) - 1}.proj' if match else None


def check_config(hf_config: dict, model: Any, part: str) -> list[str]:
  """Refuses a SegformerConfig whose function no model here computes with its weights: another
  activation or patch strides, or attention heads other than `model`'s (when it says)."""
  del part  # Heads and strides are the encoder's: the same for whole models and backbones.
  if hf_config.get('hidden_act', 'gelu') != 'gelu':
    raise ValueError(f"config.json has hidden_act={hf_config['hidden_act']!r}: our Mix-FFN "
                     "uses the exact GELU ('gelu').")
  strides = tuple(hf_config.get('strides', (4, 2, 2, 2)))
  if strides != (4, 2, 2, 2):
    raise ValueError(f'config.json has strides={list(strides)}: our MiT embeds patches at '
                     'strides [4, 2, 2, 2].')
  heads = tuple(hf_config.get('num_attention_heads', (1, 2, 5, 8)))
  ours = getattr(model, 'num_heads', None)
  if ours is not None and tuple(ours) != heads:
    raise ValueError(f'config.json has num_attention_heads={list(heads)}, this model '
                     f"num_heads={list(ours)}: set config.model.overrides=(('num_heads', "
                     f'{heads}),) to match the weights.')
  return []
