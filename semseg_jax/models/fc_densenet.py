"""FC-DenseNet, "The One Hundred Layers Tiramisu" (Jégou, Drozdzal, Vazquez, Romero, Bengio,
"The One Hundred Layers Tiramisu: Fully Convolutional DenseNets for Semantic Segmentation",
CVPR Workshops 2017, arXiv:1611.09326; Fig. 1, Tables 1-2), following the authors' Lasagne code
(SimJeg/FC-DenseNet, FC-DenseNet.py and layers.py).

A 3x3 conv to 48 channels, then n_pool dense blocks each followed by a transition down, a
bottleneck dense block, and n_pool transitions up each followed by a dense block, then a 1x1
classifier:
  layer (Table 1)      BN, ReLU, 3x3 conv to the growth rate k, dropout 0.2
  dense block          each layer's output concatenated to its input (the stack grows by k)
  transition down      BN, ReLU, 1x1 conv (same width), dropout 0.2, 2x2 max pooling
  transition up        3x3 stride-2 transposed conv ('valid': 2n + 1) of only the new maps of
                       the previous dense block (k x its layers), centre-cropped to and
                       concatenated with the skip connection (the stack at the same scale)
In the upsampling path a dense block's output is its new maps only (to keep the width in
check); the last block's full stack feeds the classifier. Every conv has a bias; BN eps 1e-4;
dropout drops elements. Init: HeUniform (gain sqrt 2: U(+-sqrt(6 / fan_in)); a transposed
conv's fan_in = kh kw C_out, Lasagne's), biases 0.

Variants (Table 2): '56' (blocks of 4, k = 12), '67' (blocks of 5, k = 16) and '103' (4, 5, 7,
10, 12 | 15 | 12, 10, 7, 5, 4; k = 16), all with 5 poolings.

Departures: Lasagne's BN keeps a running average of 1 / std, ours of the variance (the same in
the limit).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models.layers import BatchNorm, conv2d, conv_transpose2d, max_pool

BN_EPS = 1e-4
# variant -> (layers per block: n_pool down, the bottleneck, n_pool up; growth rate)
FC_DENSENET_VARIANTS: dict[str, tuple[tuple[int, ...], int]] = {
    '56': ((4,) * 11, 12),
    '67': ((5,) * 11, 16),
    '103': ((4, 5, 7, 10, 12, 15, 12, 10, 7, 5, 4), 16),
}


def he_uniform(fan_in: int) -> nn.initializers.Initializer:
  """Lasagne's HeUniform(gain='relu'): U(+-sqrt(6 / fan_in))."""
  bound = (6.0 / fan_in) ** 0.5

  def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


class BNReLUConv(nn.Module):
  """Table 1's layer: BN, ReLU, k x k conv (bias), dropout."""
  features: int
  kernel_size: int = 3
  dropout_rate: float = 0.2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = BatchNorm(use_running_average=not train, epsilon=BN_EPS, dtype=self.dtype,
                  name='bn')(x)
    k = self.kernel_size
    x = conv2d(self.features, k, use_bias=True, kernel_init=he_uniform(k * k * x.shape[-1]),
               dtype=self.dtype, name='conv')(nn.relu(x))
    if self.dropout_rate:
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return x


def _center_crop(x: jax.Array, hw: Sequence[int]) -> jax.Array:
  """Lasagne's ConcatLayer cropping 'center': the middle `hw` of `x`."""
  top, left = (x.shape[1] - hw[0]) // 2, (x.shape[2] - hw[1]) // 2
  return x[:, top:top + hw[0], left:left + hw[1]]


class FCDenseNet(nn.Module):
  """FC-DenseNet; logits at the input's size."""
  num_classes: int
  layers_per_block: tuple[int, ...] = FC_DENSENET_VARIANTS['103'][0]
  growth_rate: int = 16
  first_conv_features: int = 48
  dropout_rate: float = 0.2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> dict:
    n_pool = len(self.layers_per_block) // 2
    k, rate, dtype = self.growth_rate, self.dropout_rate, self.dtype
    layer = lambda name: BNReLUConv(k, 3, rate, dtype, name=name)
    stack = conv2d(self.first_conv_features, 3, use_bias=True,
                   kernel_init=he_uniform(9 * images.shape[-1]), dtype=dtype,
                   name='first_conv')(images.astype(dtype))
    skips = []
    for i in range(n_pool):
      for j in range(self.layers_per_block[i]):
        stack = jnp.concatenate([stack, layer(f'down{i}_layer{j}')(stack, train)], axis=-1)
      skips.append(stack)
      stack = BNReLUConv(stack.shape[-1], 1, rate, dtype, name=f'transition_down{i}')(
          stack, train)
      stack = max_pool(stack, 2, 2)
    new_maps = []
    for j in range(self.layers_per_block[n_pool]):
      new = layer(f'bottleneck_layer{j}')(stack, train)
      new_maps.append(new)
      stack = jnp.concatenate([stack, new], axis=-1)
    for i, skip in enumerate(reversed(skips)):
      kept = jnp.concatenate(new_maps, axis=-1)
      c = kept.shape[-1]
      up = conv_transpose2d(c, 3, 2, kernel_init=he_uniform(9 * c),
                            bias_init=nn.initializers.zeros, dtype=dtype,
                            name=f'transition_up{i}')(kept)
      stack = jnp.concatenate([_center_crop(up, skip.shape[1:3]), skip.astype(up.dtype)],
                              axis=-1)
      new_maps = []
      for j in range(self.layers_per_block[n_pool + 1 + i]):
        new = layer(f'up{i}_layer{j}')(stack, train)
        new_maps.append(new)
        stack = jnp.concatenate([stack, new], axis=-1)
    logits = conv2d(self.num_classes, 1, use_bias=True,
                    kernel_init=he_uniform(stack.shape[-1]), dtype=dtype,
                    name='classifier')(stack)
    return {'logits': logits.astype(jnp.float32), 'aux': []}


def fc_densenet(variant: str, num_classes: int, *, dtype: Any = jnp.float32,
                dropout_rate: float = 0.2, **overrides: Any) -> FCDenseNet:
  """FC-DenseNet '56', '67' or '103'; `dropout_rate`: every layer's (0.2); `overrides`
  replace fields (layers_per_block, growth_rate, first_conv_features)."""
  if variant not in FC_DENSENET_VARIANTS:
    raise ValueError(f'Unknown FC-DenseNet variant {variant!r}; expected one of '
                     f'{sorted(FC_DENSENET_VARIANTS, key=int)}.')
  layers_per_block, growth_rate = FC_DENSENET_VARIANTS[variant]
  fields = {'layers_per_block': layers_per_block, 'growth_rate': growth_rate, **overrides}
  return FCDenseNet(num_classes, dropout_rate=dropout_rate, dtype=dtype, **fields)
