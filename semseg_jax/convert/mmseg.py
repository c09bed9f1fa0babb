"""mmsegmentation names (1.x and 0.x share them) for our FCN, PSPNet, DeepLabV3, DeepLabV3+,
UPerNet, SegNeXt, STDC, BiSeNet V1/V2, ERFNet, CGNet and ICNet, and for their backbones as
open-mmlab ImageNet files.

A naming maps one of our module paths to the key prefix of the same module in a state dict
(torch_layout.py does the rest):

  model_key('decode_head/psp_modules_2/conv') == 'decode_head.psp_modules.2.1.conv'
  backbone_key('stem_bn1') == 'stem.1'; model_key('backbone/stem_bn1') == 'backbone.stem.1'

Backbones (keys relative to mmseg's 'backbone.', which is also how the ImageNet files name them,
e.g. resnet50_v1c.pth's 'stem.0.weight', 'layer1.0.conv1.weight'; their 'fc.*' / 'head.*'
classifiers have no counterpart):
  ResNetV1c   stem_conv{1,2,3} / stem_bn{1,2,3} -> stem.{0,3,6} / stem.{1,4,7}
  ResNetV1    conv1, bn1 -> conv1, bn1
  ResNet      layer{s}_block{j}/{conv,bn}{k} -> layer{s}.{j}.{conv,bn}{k};
              downsample_conv / downsample_bn -> layer{s}.{j}.downsample.0 / .1
  MobileNetV2 conv1/{conv,bn} -> conv1.{conv,bn};
              layer{i}_block{j}/{expand_conv, depthwise_conv, linear_conv}/{conv,bn}
              -> layer{i}.{j}.conv.{0,1,2}.{conv,bn} (layer 1, expansion 1, has no expand_conv:
              its depthwise and linear convs are conv.0 and conv.1)
  MSCAN       stage1/patch_embed/{conv1,bn1,conv2,bn2} -> patch_embed1.proj.{0,1,3,4};
              stage{i}/patch_embed/{proj,norm} -> patch_embed{i}.{proj,norm};
              stage{i}/block{j}/... -> block{i}.{j}....; stage{i}/norm -> norm{i}
  ERFNet      layer{i} (Table 1's numbers) -> encoder.{i-1} for i <= 16, else decoder.{i-17};
              down/upsamplers' conv, bn -> conv, bn; a non-bt-1D's conv3x1_1, conv1x3_1, bn1,
              conv3x1_2, conv1x3_2, bn2 -> convs_layers.{0, 2, 3, 5, 7, 8}
  CGNet       stem_{i}/{conv,bn,activate} -> stem.{i}.{...}; norm_prelu_{i}/{bn,prelu} ->
              norm_prelu_{i}.{0,1}; level{s}_{j}/... -> level{s}.{j}....; a CG block's
              f_glo/fc_{k} -> f_glo.fc.{k}; PReLU slopes -> their `weight`

STDC (STDCContextPathNet) and BiSeNet V1/V2 backbones keep mmseg's module names; lists
'name_{i}' become 'name.{i}', and where mmseg puts a module after a pooling layer (or alone) in an
nn.Sequential, its index joins the name:
  STDC        stdc_net/stages_{i}/blocks_{j}/layers_{k} -> backbone.stages.{i}.{j}.layers.{k};
              arms_{i}/atten_conv_layer -> arms.{i}.atten_conv_layer.1;
              ffm/attention_reduce, ffm/attention_expand -> ffm.attention.1.conv, .2.conv
  BiSeNet V1  context_path/backbone/... -> context_path.backbone.... (ResNet as above);
              atten_conv_layer -> atten_conv_layer.1; gap_conv -> gap_conv.1;
              ffm/conv_atten -> ffm.conv_atten.0
  BiSeNet V2  detail/stage{s}_{j} -> detail.detail_branch.{s-1}.{j};
              semantic/stage{s}_{j}/{dwconv, conv2, shortcut} -> semantic.stage{s}.{j}.{dwconv.0,
              conv2.0, shortcut.0} (dwconv_{k} -> dwconv.{k}); semantic/ce_block ->
              semantic.stage4_CEBlock (gap_bn -> gap.1); bga/{detail_dwconv, detail_down,
              semantic_conv, semantic_dwconv} -> bga.{...}.0 (their pointwise convs, which
              have no norm, -> pointwise_conv.conv)
ICNet (mmseg's ICNet backbone wraps a ResNetV1c, ICNeck holds the fusions): backbone/<ResNet>
-> backbone.backbone.<ResNet>; conv_sub1_{i} -> backbone.conv_sub1.{i}; conv_sub2, conv_sub4,
psp_bottleneck -> backbone.<same>; psp_modules_{i} -> backbone.psp_modules.{i}.1; cff_24,
cff_12 -> neck.<same>. `model_naming` picks this form where the keys have ICNet's light branch.

STDC's detail head is mmseg's third auxiliary head (auxiliary_head.2, after the two FCN heads);
its classifier has one output where mmseg's STDCHead has two, so that one layer keeps its
initialisation (the classifier rule), and its fixed Laplacian and fusion kernels have no
counterpart.

Heads: classifier/conv_seg -> conv_seg; a pyramid pooling branch (PSPHead's psp_modules_{i},
UPerHead's psp_modules/convs_{i}) and ASPP's image_pool sit after a pooling layer in an
nn.Sequential, hence psp_modules.{i}.1 and image_pool.1; numbered lists (convs_{i},
aspp_modules_{i}, sep_bottleneck_{i}, lateral_convs_{i}, fpn_convs_{i}) become '.{i}'.

Auxiliary heads: mmseg's EncoderDecoder keeps a single auxiliary head as 'auxiliary_head.', a
list of them (STDC, BiSeNet) as 'auxiliary_head.{i}.'; `model_key` names the single form,
`model_key(path, aux_list=True)` the list form, and `model_naming(keys)` picks the form a
state dict uses.
"""

import functools
import re
from collections.abc import Callable

from semseg_jax.models.backbones.mobilenet_v2 import INVERTED_RESIDUAL_SETTINGS

_RESNET_STEM = {'stem_conv1': 'stem.0', 'stem_bn1': 'stem.1', 'stem_conv2': 'stem.3',
                'stem_bn2': 'stem.4', 'stem_conv3': 'stem.6', 'stem_bn3': 'stem.7',
                'conv1': 'conv1', 'bn1': 'bn1'}
_RESNET_SHORTCUT = {'downsample_conv': 'downsample.0', 'downsample_bn': 'downsample.1'}
_MSCAN_STEM = {'conv1': 'proj.0', 'bn1': 'proj.1', 'conv2': 'proj.3', 'bn2': 'proj.4'}
_MOBILENET_UNITS = ('expand_conv', 'depthwise_conv', 'linear_conv')
_ERFNET_UNITS = {'conv': 'conv', 'bn': 'bn', 'conv3x1_1': 'convs_layers.0',
                 'conv1x3_1': 'convs_layers.2', 'bn1': 'convs_layers.3',
                 'conv3x1_2': 'convs_layers.5', 'conv1x3_2': 'convs_layers.7',
                 'bn2': 'convs_layers.8'}
_ERFNET_ENCODER_LAYERS = 16  # mmseg's ERFNet at its default depths (all its configs').

# Head modules whose names are mmseg's, and lists whose '_{i}' suffix is mmseg's '.{i}'.
_HEAD_MODULES = ('bottleneck', 'c1_bottleneck', 'conv_cat', 'fpn_bottleneck', 'squeeze',
                 'hamburger', 'align')
_HEAD_LISTS = ('convs', 'aspp_modules', 'sep_bottleneck', 'lateral_convs', 'fpn_convs')

# Keys that only mmseg files (or open-mmlab backbone files) have: a decode head, or the first
# layer of ResNetV1c, mmseg's MobileNetV2 or MSCAN, optionally under 'backbone.'.
_DETECT = re.compile(r'decode_head\..*|(backbone\.)?(stem\.0|conv1\.conv|patch_embed1\.proj\.0)'
                     r'\.weight')


# What this naming covers, for messages.
SUPPORTED = ('FCN, PSPNet, DeepLabV3/V3+, UPerNet and SegNeXt with ResNetV1c, MobileNetV2 or MSCAN '
             "backbones, STDC1/2, BiSeNet V1 (ResNet-18/50/101) and V2, ERFNet and CGNet "
             "('mmseg'), and ICNet")
# mmseg's own MixVisionTransformer (SegFormer) names its stages 'backbone.layers.{i}.{j}'.
_MIT_KEY = re.compile(r'backbone\.layers\.\d+\.0\.projection\.weight')
# SegNeXt's NMF rank in a recorded mmseg config: ham_kwargs=dict(MD_R=16, ...).
_RECORDED_RANK = re.compile(r"""\bMD_R['"]?\s*[=:]\s*(\d+)""")


def refusal(keys: set[str], module_paths: list[str]) -> str | None:
  """Why an mmseg-named state dict (`keys`) cannot fill a model with these module paths, for
  the mmseg checkpoints this naming does not cover; None for the ones it does."""
  if any(_MIT_KEY.fullmatch(key) for key in keys):
    return ("mmsegmentation's own SegFormer (MiT, keys 'backbone.layers.*') naming is not "
            'supported: use Hugging Face SegFormer weights (e.g. nvidia/segformer-b0-finetuned-'
            'ade-512-512, or nvidia/mit-b0 for a backbone), which semseg_jax reads.')
  backbone = [path for path in module_paths if path.startswith('backbone/')]
  if all(backbone_key(path[len('backbone/'):]) is None for path in backbone):
    return (f'this model has no mmsegmentation naming here; mmseg checkpoints are read for '
            f'{SUPPORTED}.')
  return None


def recorded_rank_warnings(recorded_config: str | None, model) -> list[str]:
  """SegNeXt's NMF rank holds no parameters, so a checkpoint trained with another rank loads
  silently: the rank an mmseg checkpoint's recorded config gives, if it differs from the
  model's; without a record, a reminder where the two sources of SegNeXt checkpoints differ
  (mmseg 1.x's B and L configs use 16, the official ones 64)."""
  rank = getattr(getattr(model, 'decode_head', None), 'rank', None)
  if rank is None or not hasattr(model.decode_head, 'ham_channels'):
    return []
  fix = "set --config.model.overrides=\"(('rank', {}),)\""
  if recorded_config is not None:
    match = _RECORDED_RANK.search(recorded_config)
    if match and int(match.group(1)) != rank:
      return [f'the checkpoint was trained with NMF rank MD_R={match.group(1)} (its recorded '
              f'config); this model uses {rank}: {fix.format(match.group(1))} to match.']
    return []
  if rank != 16:
    return [f'SegNeXt NMF rank {rank}: right for the official SegNeXt-B/L checkpoints, but '
            "mmsegmentation 1.x's B and L configs (and checkpoints) use 16; for those, "
            f'{fix.format(16)}.']
  return []


# mmseg's CGNet configs (after the authors' code): the mean of Cityscapes' images subtracted,
# no scaling (std 1), RGB.
CGNET_PREPROCESSING = dict(mean=(72.39239876, 82.90891754, 73.15835921), std=(1.0, 1.0, 1.0),
                           channel_order='rgb')


def preprocessing_by_keys(keys: set[str]) -> dict | None:
  """The preprocessing of mmseg models whose configs do not use ImageNet's mean and std (CGNet),
  recognised by their keys; None for the others."""
  if {'backbone.norm_prelu_0.0.weight', 'norm_prelu_0.0.weight'} & keys:
    return dict(CGNET_PREPROCESSING)
  return None


def detect(keys: set[str]) -> bool:
  """Whether `keys` follow mmseg's naming (whole models or open-mmlab backbone files)."""
  return any(_DETECT.fullmatch(key) for key in keys)


def resnet_block_key(path: str) -> str | None:
  """A layer of a residual block ('layer2_block0/downsample_bn') -> 'layer2.0.downsample.1';
  mmseg's, torchvision's and timm's ResNets name their blocks alike."""
  match = re.fullmatch(r'layer(\d)_block(\d+)/(conv[123]|bn[123]|downsample_conv|downsample_bn)',
                       path)
  if match is None:
    return None
  stage, block, layer = match.groups()
  return f'layer{stage}.{block}.{_RESNET_SHORTCUT.get(layer, layer)}'


def resnet_key(path: str) -> str | None:
  """Our ResNet (v1c deep stem or v1 stem) -> mmseg's ResNetV1c / ResNetV1 (ResNet)."""
  return _RESNET_STEM.get(path) or resnet_block_key(path)


def mobilenet_v2_key(path: str) -> str | None:
  """Our MobileNetV2 -> mmseg's MobileNetV2 (ConvModules 'conv' + 'bn' throughout)."""
  if path in ('conv1/conv', 'conv1/bn'):
    return path.replace('/', '.')
  match = re.fullmatch(r'layer(\d)_block(\d+)/(\w+)/(conv|bn)', path)
  if match is None or not 1 <= int(match.group(1)) <= len(INVERTED_RESIDUAL_SETTINGS):
    return None
  layer, block, unit, part = match.groups()
  expands = INVERTED_RESIDUAL_SETTINGS[int(layer) - 1][0] != 1
  units = _MOBILENET_UNITS if expands else _MOBILENET_UNITS[1:]
  if unit not in units:
    return None
  return f'layer{layer}.{block}.conv.{units.index(unit)}.{part}'


def mscan_key(path: str) -> str | None:
  """Our MSCAN -> mmseg's MSCAN (stages flattened into patch_embed{i}, block{i}, norm{i})."""
  match = re.fullmatch(r'stage(\d)/(.+)', path)
  if match is None:
    return None
  stage, rest = match.groups()
  if rest == 'norm':
    return f'norm{stage}'
  embed = re.fullmatch(r'patch_embed/(\w+)', rest)
  if embed is not None:
    layer = embed.group(1)
    return f'patch_embed{stage}.{_MSCAN_STEM.get(layer, layer) if stage == "1" else layer}'
  block = re.fullmatch(r'block(\d+)(/.+)?', rest)
  if block is None:
    return None
  index, inner = block.groups()
  return f'block{stage}.{index}' + (inner or '').replace('/', '.')


def erfnet_key(path: str) -> str | None:
  """Our ERFNet layers (models/erfnet.py, variant 'mmseg') -> mmseg's ERFNet."""
  match = re.fullmatch(r'layer(\d+)/(\w+)', path)
  if match is None or match.group(2) not in _ERFNET_UNITS:
    return None
  layer = int(match.group(1))
  part = (f'encoder.{layer - 1}' if layer <= _ERFNET_ENCODER_LAYERS
          else f'decoder.{layer - _ERFNET_ENCODER_LAYERS - 1}')
  return f'{part}.{_ERFNET_UNITS[match.group(2)]}'


def cgnet_key(path: str) -> str | None:
  """Our CGNet backbone (models/cgnet.py) -> mmseg's CGNet."""
  stem = re.fullmatch(r'stem_(\d)/(conv|bn|activate)', path)
  if stem is not None:
    return f'stem.{stem.group(1)}.{stem.group(2)}'
  norm = re.fullmatch(r'norm_prelu_(\d)/(bn|prelu)', path)
  if norm is not None:
    return f'norm_prelu_{norm.group(1)}.{0 if norm.group(2) == "bn" else 1}'
  block = re.fullmatch(r'level([12])_(\d+)/(conv1x1/(?:conv|bn|activate)|f_loc|f_sur|bn'
                       r'|activate|bottleneck|f_glo/fc_[02])', path)
  if block is None:
    return None
  inner = block.group(3).replace('fc_', 'fc/').replace('/', '.')
  return f'level{block.group(1)}.{block.group(2)}.{inner}'


def _dotted(path: str) -> str:
  """'stages_2/blocks_0/layers_1/conv' -> 'stages.2.blocks.0.layers.1.conv'."""
  return re.sub(r'_(\d+)(?=/|$)', r'.\1', path).replace('/', '.')


# (pattern, replacement) on the dotted path, in order; see the module docstring.
_REALTIME_RENAMES = (
    (r'^stdc_net\.', 'backbone.'), (r'(stages\.\d+)\.blocks\.', r'\1.'),
    (r'\.atten_conv_layer\.', '.atten_conv_layer.1.'), (r'\.gap_conv\.', '.gap_conv.1.'),
    (r'^ffm\.attention_reduce$', 'ffm.attention.1.conv'),
    (r'^ffm\.attention_expand$', 'ffm.attention.2.conv'),
    (r'^ffm\.conv_atten\.', 'ffm.conv_atten.0.'),
    (r'^detail\.stage(\d)\.', lambda m: f'detail.detail_branch.{int(m.group(1)) - 1}.'),
    (r'^(semantic\.stage\d\.\d+\.)(dwconv|conv2|shortcut)\.(?!\d)', r'\1\2.0.'),
    (r'^semantic\.ce_block\.gap_bn$', 'semantic.stage4_CEBlock.gap.1'),
    (r'^semantic\.ce_block\.', 'semantic.stage4_CEBlock.'),
    (r'^bga\.(detail_dwconv|detail_down|semantic_conv|semantic_dwconv)\.', r'bga.\1.0.'),
    (r'^bga\.(\w+)\.0\.pointwise_conv$', r'bga.\1.0.pointwise_conv.conv'),  # No norm here.
)
_REALTIME_ROOTS = ('stdc_net/', 'arms_', 'convs_', 'conv_avg/', 'ffm/', 'context_path/',
                   'spatial_path/', 'detail/', 'semantic/', 'bga/')


def realtime_key(path: str) -> str | None:
  """Our STDC, BiSeNet V1 and BiSeNet V2 backbones -> mmseg's (the ResNet inside BiSeNet V1's
  context path named as ResNets are)."""
  if not path.startswith(_REALTIME_ROOTS):
    return None
  resnet = re.fullmatch(r'context_path/backbone/(.+)', path)
  if resnet is not None:
    inner = resnet_key(resnet.group(1))
    return None if inner is None else f'context_path.backbone.{inner}'
  key = _dotted(path)
  for pattern, replacement in _REALTIME_RENAMES:
    key = re.sub(pattern, replacement, key)
  return key


def backbone_key(path: str) -> str | None:
  """A path under our `backbone` -> the key prefix under mmseg's 'backbone.' (ResNet,
  MobileNetV2, MSCAN, STDC, BiSeNet, ERFNet and CGNet paths do not overlap)."""
  return (resnet_key(path) or mobilenet_v2_key(path) or mscan_key(path) or realtime_key(path)
          or erfnet_key(path) or cgnet_key(path))


def head_key(path: str) -> str | None:
  """A path under a decode or auxiliary head -> the key prefix under the head's mmseg name."""
  first, _, rest = path.partition('/')
  tail = '.' + rest.replace('/', '.') if rest else ''
  if path == 'classifier/conv_seg':
    return 'conv_seg'
  if first == 'image_pool':
    return 'image_pool.1' + tail
  if first == 'psp_modules':  # UPerHead's PPM: psp_modules/convs_{i}/...
    branch = re.fullmatch(r'convs_(\d+)/(.+)', rest)
    if branch is None:
      return None
    return f'psp_modules.{branch.group(1)}.1.' + branch.group(2).replace('/', '.')
  pyramid = re.fullmatch(r'psp_modules_(\d+)', first)  # PSPHead's branches.
  if pyramid is not None:
    return f'psp_modules.{pyramid.group(1)}.1{tail}'
  listed = re.fullmatch(r'(\w+)_(\d+)', first)
  if listed is not None and listed.group(1) in _HEAD_LISTS:
    return f'{listed.group(1)}.{listed.group(2)}{tail}'
  return first + tail if first in _HEAD_MODULES else None


def model_key(path: str, aux_list: bool = False) -> str | None:
  """Our module path -> the key prefix in an mmseg EncoderDecoder's state dict; None for paths
  outside these models. `aux_list`: the checkpoint's auxiliary heads are a list."""
  first, _, rest = path.partition('/')
  if first == 'backbone':
    inner = backbone_key(rest)
    return None if inner is None else f'backbone.{inner}'
  if first == 'decode_head':
    inner = head_key(rest)
    return None if inner is None else f'decode_head.{inner}'
  if first == 'detail_head':  # STDC: mmseg's third auxiliary head (a list, so always '.2').
    inner = head_key(rest)
    return None if inner is None else f'auxiliary_head.2.{inner}'
  aux = re.fullmatch(r'auxiliary_heads_(\d+)', first)
  if aux is None:
    return None
  if not aux_list and aux.group(1) != '0':
    raise ValueError(f'{path}: a model with several auxiliary heads matches mmseg checkpoints '
                     'whose auxiliary_head is a list; use model_key(path, aux_list=True).')
  inner = head_key(rest)
  head = f'auxiliary_head.{aux.group(1)}' if aux_list else 'auxiliary_head'
  return None if inner is None else f'{head}.{inner}'


def icnet_key(path: str, aux_list: bool = True) -> str | None:
  """Our ICNet (models/icnet.py) -> mmseg's ICNet backbone, ICNeck and heads."""
  first, _, rest = path.partition('/')
  tail = '.' + rest.replace('/', '.') if rest else ''
  if first == 'backbone':
    inner = resnet_key(rest)
    return None if inner is None else f'backbone.backbone.{inner}'
  if first in ('conv_sub2', 'conv_sub4', 'psp_bottleneck'):
    return f'backbone.{first}{tail}'
  light = re.fullmatch(r'conv_sub1_(\d)', first)
  if light is not None:
    return f'backbone.conv_sub1.{light.group(1)}{tail}'
  pyramid = re.fullmatch(r'psp_modules_(\d)', first)
  if pyramid is not None:
    return f'backbone.psp_modules.{pyramid.group(1)}.1{tail}'
  if first in ('cff_24', 'cff_12'):
    return f'neck.{first}{tail}'
  return model_key(path, aux_list)


def model_naming(keys: set[str]) -> Callable[[str], str | None]:
  """`model_key` in the auxiliary-head form the state dict with `keys` uses (`icnet_key` for
  ICNet's)."""
  aux_list = any(k.startswith('auxiliary_head.0.') for k in keys)
  if 'backbone.conv_sub1.0.conv.weight' in keys:  # ICNet's light branch.
    return functools.partial(icnet_key, aux_list=aux_list)
  return functools.partial(model_key, aux_list=aux_list)
