"""VGG16 and VGG16-BN (Simonyan & Zisserman, ICLR 2015, configuration D) as the trunk of FCN and
SegNet, in torchvision's `vgg16` / `vgg16_bn` layer layout.

Thirteen 3x3 convolutions (stride 1, padding 1, with bias) in five blocks of (2, 2, 3, 3, 3)
convs of widths (64, 128, 256, 512, 512), each conv followed by ReLU (BN variant: conv ->
BatchNorm -> ReLU), each block ended by 2x2 max pooling at stride 2. With `fully_conv`, the
classifier's first two fully connected layers follow as convolutions, as in FCN (Long et al.
2015, Sec. 3.1): fc6 = 7x7 conv of 4096 channels, fc7 = 1x1 conv of 4096 channels, each followed
by ReLU and dropout 0.5.

Parameters are flat (one module per layer) so that a converter can map torchvision's state
dict one to one (`torchvision_names` gives each layer's torchvision key). A conv kernel is the
torch weight [O, I, kh, kw] transposed to [kh, kw, I, O]; fc6's Linear weight [4096, 25088] is
first reshaped to [4096, 512, 7, 7] (torch flattens pool5 in C, H, W order).

Initialisation follows torchvision: convs He normal (fan_out), zero biases; BatchNorm gamma 1,
beta 0; fc6/fc7 (torchvision's Linear layers) N(0, 0.01^2), zero biases. `kernel_init` replaces
the conv init (SegNet's Caffe nets use MSRA fan_in).

Deviations from torchvision:
- Pooling rounds up (Caffe's pooling, PyTorch's ceil_mode=True; odd sizes padded with -inf), as
  in the FCN and SegNet reference nets (Caffe; torchfcn uses ceil_mode=True), so no row or column
  of an odd-sized map is lost. torchvision's floor mode differs only at odd sizes.
- fc6 is padded by 3 (torchvision has no fc6 conv; FCN's Caffe nets pad it by 0 after padding
  conv1_1 by 100), so every map keeps its size at stride 1 and pool_k covers the whole image.
"""

from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models.layers import batch_norm, conv2d, max_pool, max_pool_2x2_with_indices

VGG16_DEPTHS = (2, 2, 3, 3, 3)
VGG16_WIDTHS = (64, 128, 256, 512, 512)
FC_FEATURES = 4096


class VGGFeatures(NamedTuple):
  """What the trunk returns.

  pools: the outputs of pool1..pool5 (strides 2, 4, 8, 16, 32; sizes rounded up).
  indices: for each pool, where its maxima were (`max_pool_2x2_with_indices`), or None.
  fc7: the output of fc7 (after ReLU and dropout) at stride 32, or None.
  """
  pools: tuple[jax.Array, ...]
  indices: tuple[jax.Array, ...] | None
  fc7: jax.Array | None


def torchvision_names(batch_norm: bool = False, fully_conv: bool = True) -> dict[str, str]:
  """Our layer name -> torchvision's module name in `vgg16` (`vgg16_bn` if batch_norm)."""
  names, index = {}, 0
  for b, depth in enumerate(VGG16_DEPTHS, start=1):
    for j in range(1, depth + 1):
      names[f'conv{b}_{j}'] = f'features.{index}'
      if batch_norm:
        names[f'bn{b}_{j}'] = f'features.{index + 1}'
      index += 3 if batch_norm else 2  # conv (+ bn) + relu
    index += 1  # max pool
  if fully_conv:
    names.update(fc6='classifier.0', fc7='classifier.3')
  return names


class VGG16(nn.Module):
  """The VGG16 trunk; returns `VGGFeatures` (pool outputs, optional pooling indices and fc7).

  `pool_dropout` lists blocks (1..5) whose pooled output passes through dropout before the next
  block (Bayesian SegNet's encoder dropout); pooling indices are taken before it. Dropout layers
  sample when `train` or `mc_dropout` (Monte-Carlo dropout at inference).
  """
  batch_norm: bool = False
  widths: Sequence[int] = VGG16_WIDTHS
  fully_conv: bool = False
  fc_features: int = FC_FEATURES
  with_indices: bool = False
  pool_dropout: Sequence[int] = ()
  dropout_rate: float = 0.5
  mc_dropout: bool = False
  kernel_init: Callable[..., jax.Array] | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> VGGFeatures:
    if len(self.widths) != len(VGG16_DEPTHS):
      raise ValueError(f'VGG16 widths={tuple(self.widths)}: expected 5 block widths.')
    deterministic = not (train or self.mc_dropout)
    pools, indices = [], []
    for b, (depth, width) in enumerate(zip(VGG16_DEPTHS, self.widths), start=1):
      for j in range(1, depth + 1):
        x = conv2d(width, 3, use_bias=True, kernel_init=self.kernel_init, dtype=self.dtype,
                   name=f'conv{b}_{j}')(x)
        if self.batch_norm:
          x = batch_norm(train, self.dtype, name=f'bn{b}_{j}')(x)
        x = nn.relu(x)
      if self.with_indices:
        x, where = max_pool_2x2_with_indices(x)
        indices.append(where)
      else:
        x = max_pool(x, 2, 2, ceil_mode=True)
      if b in self.pool_dropout:
        x = nn.Dropout(self.dropout_rate, deterministic=deterministic)(x)
      pools.append(x)

    fc7 = None
    if self.fully_conv:
      fc_init = nn.initializers.normal(0.01)
      x = conv2d(self.fc_features, 7, use_bias=True, kernel_init=fc_init, dtype=self.dtype,
                 name='fc6')(x)
      x = nn.Dropout(self.dropout_rate, deterministic=deterministic)(nn.relu(x))
      x = conv2d(self.fc_features, 1, use_bias=True, kernel_init=fc_init, dtype=self.dtype,
                 name='fc7')(x)
      fc7 = nn.Dropout(self.dropout_rate, deterministic=deterministic)(nn.relu(x))
    return VGGFeatures(tuple(pools), tuple(indices) if self.with_indices else None, fc7)
