"""Pretrained weights from PyTorch checkpoints (and our own), onto semseg_jax models.

`load(source, variables, part, field)` reads `source` (sources.py), recognises the naming of
its tensors (FAMILIES), converts them into our layout (torch_layout.py) and fits them to the
model's `variables` (`merge` puts them in):
- part='model': every array of the model must come from the source, and every tensor of the
  source must be used (an ImageNet classifier and BatchNorm counters excepted);
- part='backbone': the same, within the model's `backbone` subtree and the source's backbone.
Missing, unused or mis-shaped tensors are listed by name in the error. The one exception is the
class count: a classifier whose number of classes differs (ADE20K weights fine-tuned on
Cityscapes) keeps its fresh initialisation, with a warning naming what was skipped.

The preprocessing that the weights expect (mean/std on 0..255, channel order) comes with them:
from preprocessor_config.json, from our converter's record, or from the family's convention.
"""

import dataclasses
import re
from typing import Any, Callable

from absl import logging
import jax
import numpy as np

from semseg_jax import checkpointing
from semseg_jax.convert import drn
from semseg_jax.convert import espnet
from semseg_jax.convert import hf_mobilenet_v2
from semseg_jax.convert import hf_resnet
from semseg_jax.convert import hf_segformer
from semseg_jax.convert import refinenet
from semseg_jax.convert import mmseg
from semseg_jax.convert import sources
from semseg_jax.convert import torch_layout
from semseg_jax.convert import torchvision_resnet

# The preprocessing of most PyTorch weights (torchvision, timm, mmseg, HF's SegFormer and ResNet
# processors): ImageNet mean/std on 0..255 RGB.
IMAGENET = dict(mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375), channel_order='rgb')


@dataclasses.dataclass(frozen=True)
class Family:
  """One naming scheme of PyTorch checkpoints."""
  description: str
  detect: Callable[[set[str]], bool]  # On canonical keys.
  backbone_key: Callable[[str], str | None]  # Our backbone-relative path -> key in backbone.
  backbone_prefixes: tuple[str, ...]  # Where the backbone sits in this family's files.
  model_key: Callable[[str], str | None] | None = None  # Whole models; None: backbones only.
  # The whole-model naming chosen from a state dict's keys (overrides model_key where given).
  model_naming: Callable[[set[str]], Callable[[str], str | None]] | None = None
  canonical: Callable[[str], str] = lambda key: key  # Renames of newer library versions.
  preprocessing: dict = dataclasses.field(default_factory=lambda: dict(IMAGENET))
  # (source keys) -> the preprocessing of models whose convention is not the family's, or None.
  preprocessing_by_keys: Callable[[set[str]], dict | None] | None = None
  ignored: tuple[str, ...] = ()  # Regexes of source keys with no counterpart (ImageNet heads).
  # (config.json, our model or None, part) -> warnings; raises ValueError for HF configs that
  # no model here matches. It compares what the tensors' shapes cannot show.
  check_config: Callable[[dict, Any, str], list[str]] | None = None
  # (source keys, our module paths) -> why this family's naming cannot fill the model, or None.
  refusal: Callable[[set[str], list[str]], str | None] | None = None
  # (config recorded in the checkpoint or None, our model) -> warnings.
  check_recorded: Callable[[str | None, Any], list[str]] | None = None


# Detection goes in this order: the first family whose `detect` accepts the keys.
FAMILIES: dict[str, Family] = {
    'hf_segformer': Family(
        'Hugging Face SegFormer (SegformerForSemanticSegmentation, SegformerModel, mit-b*)',
        hf_segformer.detect, hf_segformer.backbone_key, ('segformer.', ''),
        model_key=hf_segformer.model_key, canonical=hf_segformer.canonical,
        ignored=(r'^classifier\.',),  # SegformerImageProcessor: ImageNet mean/std.
        check_config=hf_segformer.check_config),
    'hf_resnet': Family(
        'Hugging Face ResNet (ResNetModel, ResNetForImageClassification; microsoft/resnet-*)',
        hf_resnet.detect, hf_resnet.backbone_key, ('resnet.', 'backbone.', ''),
        ignored=(r'^classifier\.',),  # microsoft/resnet-*'s processor: ImageNet mean/std.
        check_config=hf_resnet.check_config),
    'hf_mobilenet_v2': Family(
        'Hugging Face MobileNetV2 (MobileNetV2ForSemanticSegmentation: '
        'google/deeplabv3_mobilenet_v2_*; ImageNet MobileNetV2 backbones)',
        hf_mobilenet_v2.detect, hf_mobilenet_v2.backbone_key, ('mobilenet_v2.', ''),
        model_key=hf_mobilenet_v2.model_key, preprocessing=hf_mobilenet_v2.PREPROCESSING,
        ignored=hf_mobilenet_v2.IGNORED, check_config=hf_mobilenet_v2.check_config),
    'mmseg': Family(
        'mmsegmentation (FCN, PSPNet, DeepLabV3/V3+, UPerNet, SegNeXt, STDC, BiSeNet V1/V2, '
        'ERFNet, CGNet; ResNetV1c, MobileNetV2 and MSCAN backbones, also as open-mmlab ImageNet '
        'files)',
        mmseg.detect, mmseg.backbone_key, ('backbone.', ''), model_key=mmseg.model_key,
        model_naming=mmseg.model_naming,
        # ImageNet files: classifiers, and mmcls MobileNetV2's last 1x1 conv (mmseg drops it);
        # the fixed kernels of STDC's detail head (constants here).
        ignored=(r'^fc\.', r'^head\.', r'^(backbone\.)?conv2\.',
                 r'^auxiliary_head\.\d+\.(laplacian|fusion)_kernel$'),
        refusal=mmseg.refusal, check_recorded=mmseg.recorded_rank_warnings,
        preprocessing_by_keys=mmseg.preprocessing_by_keys),
    'espnet': Family(
        "the authors' ESPNet / ESPNet-C (sacmehta/ESPNet; ESPNet-C as a backbone)",
        espnet.detect, espnet.backbone_key, ('encoder.', ''), model_key=espnet.model_key,
        model_naming=espnet.model_naming, preprocessing=espnet.PREPROCESSING),
    'drn': Family(
        "the authors' DRN-C / DRN-D (fyu/drn: ImageNet classifiers as backbones, DRNSeg "
        'segmentation models)',
        drn.detect, drn.backbone_key, ('',), model_key=drn.model_key,
        model_naming=drn.model_naming, canonical=torch_layout.strip_data_parallel,
        ignored=drn.IGNORED, preprocessing_by_keys=drn.preprocessing_by_keys),
    'refinenet': Family(
        "DrSleep's RefineNet-101 (refinenet-pytorch) and Light-Weight RefineNet "
        '(light-weight-refinenet ResNetLW)',
        refinenet.detect, torchvision_resnet.backbone_key, ('',),
        model_key=refinenet.model_key, canonical=torch_layout.strip_data_parallel),
    'timm_resnet': Family(
        'timm ResNet (resnet18..152, and the resnet*c deep-stem variants)',
        torchvision_resnet.detect_timm, torchvision_resnet.timm_backbone_key, ('',),
        ignored=(r'^fc\.',)),
    'torchvision_resnet': Family(
        'torchvision ResNet (resnet18..152)',
        torchvision_resnet.detect, torchvision_resnet.backbone_key, ('',), ignored=(r'^fc\.',)),
}


def detect_family(keys: set[str], origin: str) -> str:
  """The name of the first family of FAMILIES whose naming `keys` follow."""
  for name, family in FAMILIES.items():
    if family.detect({family.canonical(k) for k in keys}):
      return name
  sample = ', '.join(sorted(keys)[:8])
  raise ValueError(f'{origin}: unknown naming of its {len(keys)} tensors (first: {sample}); '
                   'known: ' + '; '.join(f.description for f in FAMILIES.values()) + '.')


@dataclasses.dataclass
class Loaded:
  arrays: dict[str, np.ndarray]  # Leaf path ('params/backbone/conv1/kernel') -> array.
  preprocessing: dict | None  # What the weights expect (mean, std, channel_order), if known.
  family: str  # 'orbax' or a key of FAMILIES.
  reinitialised: list[str]  # Leaf paths kept at their initial values (class count differs).


def _leaf_path(key_path: tuple) -> str:
  """'params/backbone/conv1/kernel' for a jax key path of dict keys."""
  return '/'.join(str(k.key) for k in key_path)


def _flat(tree: dict) -> dict[str, Any]:
  return {_leaf_path(path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def _is_classifier(leaf_path: str) -> bool:
  """Classifier layers, whose last axis is the class count: decode heads' `classifier` or
  `conv_seg`, and those of auxiliary heads."""
  return re.search(r'(^|/)(classifier|conv_seg)(/conv_seg)?/(kernel|bias)$', leaf_path) is not None


def _wanted(variables: dict, part: str, field: str, origin: str) -> dict[str, Any]:
  """The leaves of `variables` that `part` covers, by leaf path."""
  if part not in ('model', 'backbone'):
    raise ValueError(f"part={part!r}; expected 'model' or 'backbone'.")
  leaves = _flat(variables)
  if part == 'model':
    return leaves
  wanted = {k: v for k, v in leaves.items()
            if k.startswith(('params/backbone/', 'batch_stats/backbone/'))}
  if not wanted:
    raise ValueError(f'{field}: this model has no `backbone` part to load {origin} into; '
                     'use config.model.pretrained for whole-model weights.')
  return wanted


def load(source: str, variables: dict, part: str, field: str, model: Any = None) -> Loaded:
  """The arrays of `source` for `variables` ({'params', 'batch_stats'} of the model, arrays
  or ShapeDtypeStructs): the whole model's, or its backbone's. Raises ValueError naming every
  misfit, in config field `field`'s name. With `model` (the flax module), a Hugging Face
  config.json is also compared with it: settings it cannot match are refused, and settings that
  change its function without changing any shape are warned about."""
  read = sources.read(source, field)
  if read.orbax_path is not None:
    found = _flat(checkpointing.read_variables(read.orbax_path))
    if part == 'backbone':
      found = {k: v for k, v in found.items()
               if k.startswith(('params/backbone/', 'batch_stats/backbone/'))}
    return _fit(found, {}, [], variables, part, field, read.origin, 'orbax',
                read.preprocessing)
  family_name = detect_family(set(read.state_dict), read.origin)
  family = FAMILIES[family_name]
  if read.hf_config is not None and family.check_config is not None:
    try:
      differences = family.check_config(read.hf_config, model, part)
    except ValueError as e:
      raise ValueError(f'{field}={source!r}: {e}') from e
    for difference in differences:
      logging.warning('%s=%r: %s', field, source, difference)
  if family.check_recorded is not None and model is not None and part == 'model':
    for warning in family.check_recorded(read.recorded_config, model):
      logging.warning('%s=%r: %s', field, source, warning)
  state_dict = {family.canonical(k): v for k, v in read.state_dict.items()}
  if family.refusal is not None:
    reason = family.refusal(set(state_dict), list(torch_layout.module_leaves(variables)))
    if reason is not None:
      raise ValueError(f'{field}={source!r}: {reason}')
  key_of, in_scope = _naming(state_dict, variables, family, part, field, read.origin)
  conversion = torch_layout.convert_state_dict(state_dict, variables, key_of)
  converted = _flat(conversion.variables)
  found = {path: converted[path] for path in conversion.assigned}
  mismatched = {m.leaf_path: m for m in conversion.mismatched}
  ignored = [k for k in conversion.unused if in_scope(k) and any(re.search(p, k)
                                                                  for p in family.ignored)]
  unused = [k for k in conversion.unused if in_scope(k) and k not in ignored]
  if ignored:
    logging.info('%s: %s tensors without a counterpart here (an ImageNet head), not loaded: %s',
                 field, read.origin, ', '.join(ignored))
  missing = {path: f'{path}: {key} is not in the source'
             for path, key in conversion.missing_leaves.items()}
  return _fit(found, mismatched, unused, variables, part, field, read.origin, family_name,
              read.preprocessing or family_preprocessing(family, set(state_dict)), missing)


def family_preprocessing(family: Family, keys: set[str]) -> dict:
  """The preprocessing that a family's weights with these (canonical) keys expect."""
  by_keys = family.preprocessing_by_keys(keys) if family.preprocessing_by_keys else None
  return dict(by_keys or family.preprocessing)


def _naming(state_dict: dict, variables: dict, family: Family, part: str, field: str,
            origin: str):
  """(key_of for our module paths, which source keys the load must use)."""
  if part == 'model':
    if family.model_key is None:
      raise ValueError(f'{field}: {origin} holds {family.description} weights, a backbone '
                       'only; load it with config.model.backbone_pretrained.')
    if family.model_naming is not None:
      return family.model_naming(set(state_dict)), lambda key: True
    return family.model_key, lambda key: True
  # The backbone's place in the file: the prefix under which most of its modules are.
  modules = {k.rsplit('.', 1)[0] for k in state_dict}
  ours = [family.backbone_key(path[len('backbone/'):])
          for path in torch_layout.module_leaves(variables) if path.startswith('backbone/')]

  def hits(prefix):
    return sum(1 for inner in ours if inner is not None and prefix + inner in modules)
  prefix = max(family.backbone_prefixes, key=hits)
  if not hits(prefix):
    raise ValueError(f'{field}: {origin} follows the naming of {family.description}, but '
                     "none of this model's backbone modules is in it.")

  def key_of(path: str) -> str | None:
    inner = family.backbone_key(path[len('backbone/'):]) if path.startswith('backbone/') else None
    return None if inner is None else prefix + inner

  def in_scope(key: str) -> bool:  # Tensors of the source's backbone must all be used.
    return key.startswith(prefix) and not key.startswith(_HEADS)
  return key_of, in_scope


_HEADS = ('decode_head.', 'auxiliary_head.', 'segmentation_head.')


def _fit(found: dict[str, np.ndarray], mismatched: dict, unused: list[str], variables: dict,
         part: str, field: str, origin: str, family: str, preprocessing: dict | None,
         missing: dict[str, str] | None = None) -> Loaded:
  """Puts the found leaves into `variables`; raises naming every misfit."""
  wanted = _wanted(variables, part, field, origin)
  missing, problems = missing or {}, []
  reinitialised, result, absent = [], {}, []
  for path, leaf in wanted.items():
    shape = tuple(leaf.shape)
    if path in mismatched or (path in found and np.shape(found[path]) != shape):
      source_shape = mismatched[path].source_shape if path in mismatched else np.shape(
          found[path])
      classes = source_shape[0] if path in mismatched else source_shape[-1]
      if _is_classifier(path) and classes != shape[-1]:
        reinitialised.append(f'{path} ({classes} classes in the source, {shape[-1]} here)')
      else:
        problems.append(str(mismatched[path]) if path in mismatched else
                        f'{path}: source {source_shape} vs model {shape}')
    elif path in found:
      result[path] = np.asarray(found[path]).astype(np.dtype(leaf.dtype))
    else:
      absent.append(path)
      problems.append(missing.get(path) or (f'{path}: not in the checkpoint' if family == 'orbax'
                                            else f'{path}: the {family} naming has no tensor '
                                            'for it'))
  if family == 'orbax':
    unused = sorted(k for k in found if k not in wanted)
  aux = [k for k in unused if k.startswith('auxiliary_head.') or '/auxiliary_heads_' in k]
  if aux:
    logging.warning('%s: %s has auxiliary-head tensors this model does not use (its '
                    'config.model.aux_head is off); not loaded: %s', field, origin,
                    ', '.join(aux))
  problems += [f'{k}: in the source, used by nothing here' for k in unused if k not in aux]
  if problems:
    hint = ''
    if part == 'model' and absent and all('/backbone/' not in p for p in absent) and (
        len(absent) == len(problems)):
      hint = ' (if it holds a backbone only, load it with config.model.backbone_pretrained)'
    raise ValueError(f'{field}: {origin} does not fit this model{hint}; {len(problems)} '
                     'problems: ' + '; '.join(problems[:20]) + (' ...' if len(problems) > 20
                                                               else ''))
  if reinitialised:
    logging.warning('%s: the class count differs from %s, so these classifier arrays keep '
                    'their initial values: %s', field, origin, ', '.join(reinitialised))
  return Loaded(result, preprocessing, family, reinitialised)


def merge(variables: dict, arrays: dict[str, Any], put: Callable[[Any, Any], Any] | None = None,
          shardings: dict | None = None) -> dict:
  """`variables` with the leaves that `arrays` holds (by leaf path) replaced; with `put`,
  each new leaf is put(array, its sharding in `shardings`)."""
  def replace(path, leaf, sharding=None):
    key = _leaf_path(path)
    if key not in arrays:
      return leaf
    return arrays[key] if put is None else put(arrays[key], sharding)
  if shardings is None:
    return jax.tree_util.tree_map_with_path(replace, variables)
  return jax.tree_util.tree_map_with_path(replace, variables, shardings)


def preprocessing_of(source: str, field: str) -> dict | None:
  """The preprocessing (mean, std on 0..255; channel_order) that `source`'s weights expect:
  recorded with them, else their family's convention; None for our own checkpoints that
  recorded none. Reads tensor names only where the format allows (safetensors)."""
  read = sources.read(source, field, tensors=False)
  if read.preprocessing is not None or read.orbax_path is not None:
    return read.preprocessing
  family = FAMILIES[detect_family(set(read.state_dict), read.origin)]
  return family_preprocessing(family, {family.canonical(k) for k in read.state_dict})
