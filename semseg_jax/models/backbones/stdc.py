"""STDC networks and their context path (Fan et al., "Rethinking BiSeNet For Real-time Semantic
Segmentation", CVPR 2021), as mmsegmentation 1.x builds them (`mmseg/models/backbones/stdc.py`:
STDCModule, STDCNet, FeatureFusionModule, STDCContextPathNet; the attention refinement module of
`bisenetv1.py`), cross-checked with the official code (MichaelFan01/STDC-Seg, `nets/stdcnet.py`,
`models/model_stages.py`).

STDCNet (paper Sec. 3.1, Fig. 3, Table 1): two stride-2 3x3 ConvModules (32, 64 channels), then
three stages of STDC modules at strides 8, 16, 32 with 256, 512, 1024 channels; each stage opens
with a stride-2 module. STDC1 ('STDCNet813') has 2 modules per stage, STDC2 ('STDCNet1446') 4, 5
and 3. The segmentation backbone has no final 1x1 conv (`with_final_conv=False`; the official
`use_conv_last` default).

STDC module ('cat' fusion, 4 blocks): with N output channels, a 1x1 ConvModule to N/2, then 3x3
ConvModules to N/4, N/8 and N/8, each on the previous block's output; the outputs of the four
are concatenated (short-term dense concatenation). In a stride-2 module the second block reads
a depthwise 3x3 stride-2 conv + BN (no activation) of the first block's output, and the first
block's output enters the concatenation through a 3x3 stride-2 average pool (padding 1, zeros
counted: PyTorch's count_include_pad).

Context path (Sec. 3.2, Fig. 4): the stride-32 feature is globally average-pooled and passed
through a 1x1 ConvModule (128 channels). Attention refinement modules (3x3 ConvModule to 128,
then a sigmoid gate from global pooling + 1x1 conv + BN) refine the stride-32 and stride-16
features; each refined map plus the upsampled deeper context is upsampled (nearest, PyTorch's
legacy 'nearest' indexing) to the next finer stride and passed through a 3x3 ConvModule. The
feature fusion module concatenates the stride-8 STDC feature (256) with the stride-8 context
(128), a 1x1 ConvModule to 256, and adds a channel-attention reweighting (global pooling, 1x1
conv to 64 + ReLU, 1x1 conv to 256, sigmoid; no norm, no bias): x + x * attention.

Outputs (as mmseg's STDCContextPathNet): [stride-8 STDC feature (256, for the detail head),
stride-16 context (128), stride-8 context (128), fused stride-8 feature (256)].

Parameter names are mmseg's (nn.Sequential indices as `_i`).

Deviations: none in the layer list, widths or init (He normal fan_out, as mmcv's ConvModule).
The official code has the same layers; its BN is InPlaceABNSync, and its heads differ (see
`models/stdc.py`).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models.layers import (AttentionRefinement, ConvBNAct, avg_pool, conv2d,
                                      global_avg_pool, resize_nearest)

STDC_ARCHS = {'stdc1': (2, 2, 2), 'stdc2': (4, 5, 3)}  # STDC modules per stage (strides 8-32).


class STDCModule(nn.Module):
  """Short-term dense concatenation module ('cat' fusion) with `num_convs` blocks."""
  features: int
  stride: int = 1
  num_convs: int = 4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    first = ConvBNAct(self.features // 2, 1, dtype=self.dtype, name='layers_0')(x, train)
    y = first
    if self.stride == 2:
      y = ConvBNAct(self.features // 2, 3, stride=2, groups=self.features // 2, activation=None,
                    dtype=self.dtype, name='downsample')(first, train)
      first = avg_pool(first, 3, 2, padding=1)
    outputs = [first]
    for k in range(1, self.num_convs):
      width = self.features // 2 ** (k + 1 if k < self.num_convs - 1 else k)
      y = ConvBNAct(width, 3, dtype=self.dtype, name=f'layers_{k}')(y, train)
      outputs.append(y)
    return jnp.concatenate(outputs, axis=-1)


class STDCStage(nn.Module):
  """`depth` STDC modules; the first has stride 2."""
  features: int
  depth: int
  num_convs: int = 4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    for j in range(self.depth):
      x = STDCModule(self.features, 2 if j == 0 else 1, self.num_convs, self.dtype,
                     name=f'blocks_{j}')(x, train)
    return x


class STDCNet(nn.Module):
  """The STDC backbone: features at strides 8, 16 and 32."""
  stage_depths: Sequence[int] = STDC_ARCHS['stdc1']
  channels: Sequence[int] = (32, 64, 256, 512, 1024)
  num_convs: int = 4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
    x = ConvBNAct(self.channels[0], 3, stride=2, dtype=self.dtype, name='stages_0')(x, train)
    x = ConvBNAct(self.channels[1], 3, stride=2, dtype=self.dtype, name='stages_1')(x, train)
    features = []
    for i, depth in enumerate(self.stage_depths):
      x = STDCStage(self.channels[i + 2], depth, self.num_convs, self.dtype,
                    name=f'stages_{i + 2}')(x, train)
      features.append(x)
    return features


class FeatureFusion(nn.Module):
  """STDC's FFM: 1x1 ConvModule on [spatial, context], then x + x * channel attention."""
  features: int
  scale_factor: int = 4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, spatial: jax.Array, context: jax.Array, train: bool = False) -> jax.Array:
    x = ConvBNAct(self.features, 1, dtype=self.dtype, name='conv0')(
        jnp.concatenate([spatial, context], axis=-1), train)
    attention = conv2d(self.features // self.scale_factor, 1, dtype=self.dtype,
                       name='attention_reduce')(global_avg_pool(x))
    attention = conv2d(self.features, 1, dtype=self.dtype,
                       name='attention_expand')(nn.relu(attention))
    return x + x * nn.sigmoid(attention)


class STDCContextPath(nn.Module):
  """STDCNet + context path + FFM -> [stride-8 STDC feature, stride-16 context, stride-8
  context, fused stride-8 feature]."""
  stage_depths: Sequence[int] = STDC_ARCHS['stdc1']
  channels: Sequence[int] = (32, 64, 256, 512, 1024)
  num_convs: int = 4
  context_channels: int = 128
  fusion_channels: int = 256
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
    s8, s16, s32 = STDCNet(self.stage_depths, self.channels, self.num_convs, self.dtype,
                           name='stdc_net')(x, train)
    global_context = ConvBNAct(self.context_channels, 1, dtype=self.dtype, name='conv_avg')(
        global_avg_pool(s32), train)
    deeper = resize_nearest(global_context, s32.shape[1:3])
    contexts = []
    for i, (feature, finer) in enumerate(((s32, s16), (s16, s8))):
      refined = AttentionRefinement(self.context_channels, self.dtype, name=f'arms_{i}')(
          feature, train) + deeper
      deeper = ConvBNAct(self.context_channels, 3, dtype=self.dtype, name=f'convs_{i}')(
          resize_nearest(refined, finer.shape[1:3]), train)
      contexts.append(deeper)
    fused = FeatureFusion(self.fusion_channels, dtype=self.dtype, name='ffm')(
        s8, contexts[1], train)
    return [s8, contexts[0], contexts[1], fused]
