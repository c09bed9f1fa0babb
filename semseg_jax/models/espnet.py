"""ESPNet and ESPNet-C (Mehta, Rastegari, Caspi, Shapiro, Hajishirzi, "ESPNet: Efficient Spatial
Pyramid of Dilated Convolutions for Semantic Segmentation", ECCV 2018, arXiv:1803.06815;
Fig. 1-2, 4), following the authors' PyTorch code (sacmehta/ESPNet, train/Model.py), whose
module names the parameters take (`convert/espnet.py` reads its published weights).

ESP module (Fig. 1b, the code's DilatedParllelResidualBlockB): a 1x1 conv reduces to
n = C_out / 5 channels (Reduce), five 3x3 convs dilated 1, 2, 4, 8, 16 (Split, Transform; the
dilation-1 one gives C_out - 4n channels), hierarchical feature fusion (the dilated outputs
summed cumulatively: d2, d2+d4, d2+d4+d8, d2+..+d16) and concatenation (Merge), plus the input
(where `add`), then BN and PReLU. The strided form (DownSamplerB) starts with a 3x3 stride-2 conv
instead and has no residual. Convs have no bias; BN eps 1e-3; PReLU slopes per channel.

ESPNet-C (Fig. 4c, `ESPNet_Encoder`):
  level1   3x3 stride-2 conv 3 -> 16, BN, PReLU                       1/2
  b1       BN, PReLU on [level1, the image avg-pooled once] (19)
  level2   strided ESP 19 -> 64, then alpha2 ESP modules 64 -> 64     1/4
  b2       BN, PReLU on [last, first, the image pooled twice] (131)
  level3   strided ESP 131 -> 128, then alpha3 ESP modules 128       1/8
  b3       BN, PReLU on [first, last] (256); classifier 1x1 256 -> C (logits at 1/8)
ESPNet (Fig. 4d; both variants hold ESPNet-C under `backbone`): ESPNet-C's classifier output, BN, a 2x2 stride-2 transposed conv (`up_l3`)
to 1/4, concatenated with a 1x1 projection of b2 to C (`level3_C`), BN, PReLU, an ESP module
2C -> C without residual (`combine_l2_l3`), a 2x2 stride-2 transposed conv, BN, PReLU (`up_l2`)
to 1/2, concatenated with level1's output (16 channels), a 3x3 conv, BN, PReLU to C (`conv`),
and a 2x2 stride-2 transposed conv (`classifier`) to the input's size. Every transposed conv has
no bias. (The code's test/Model.py, which the published weights and the paper's 0.364M count
belong to, concatenates level1's output; its train/Model.py concatenates b1's 19 channels.)
The image-pooling (InputProjectionA) is 3x3 average pooling, stride 2, padding 1.

Variants: 'espnet' and 'espnet_c', both at the paper's alpha2 = 2, alpha3 = 8 (its Cityscapes
models; `stage2_blocks` / `stage3_blocks` override them). Init: PyTorch's defaults (the code sets
none): weights U(+-1/sqrt(fan_in)) (a transposed conv's fan_in = kh * kw * C_out), PReLU 0.25.

Departures:
- Any input size: where a side is not a multiple of 8, each transposed conv's output is
  cropped (bottom, right) to the map it is concatenated with, and the logits to the input.
- The reference outputs a 20th class for void pixels (trained); here void pixels carry the
  ignore label. `void_output=True` builds it (the published Cityscapes weights have it): every
  decoder layer is then C + 1 wide, and the logits leave that last channel out.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models.layers import (PReLU, avg_pool, batch_norm, conv2d, conv_transpose2d,
                                      torch_default_init)

ESPNET_VARIANTS = ('espnet', 'espnet_c')
BN_EPS = 1e-3
DILATIONS = (1, 2, 4, 8, 16)


def _conv(features: int, in_features: int, kernel_size: int, stride: int = 1,
          dilation: int = 1, dtype: Any = jnp.float32, name: str | None = None) -> nn.Conv:
  """The code's C / CDilated: no bias, padding dilation * (k - 1) / 2, PyTorch's init."""
  return conv2d(features, kernel_size, stride, dilation,
                kernel_init=torch_default_init(kernel_size * kernel_size * in_features),
                dtype=dtype, name=name)


def _bn_prelu(x: jax.Array, train: bool, dtype: Any, bn: str, act: str) -> jax.Array:
  """BN (eps 1e-3) then PReLU, inside the caller's compact scope (modules `bn`, `act`)."""
  x = batch_norm(train, dtype, epsilon=BN_EPS, name=bn)(x)
  return PReLU(dtype=dtype, name=act)(x)


class BNPReLU(nn.Module):
  """The code's BR: BN, PReLU."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    return _bn_prelu(x, train, self.dtype, 'bn', 'act')


class ConvBNPReLU(nn.Module):
  """The code's CBR: k x k conv (no bias), BN, PReLU."""
  features: int
  kernel_size: int = 3
  stride: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = _conv(self.features, x.shape[-1], self.kernel_size, self.stride, dtype=self.dtype,
              name='conv')(x)
    return _bn_prelu(x, train, self.dtype, 'bn', 'act')


class ESPModule(nn.Module):
  """Fig. 1b: reduce, split-transform with five dilations, hierarchical fusion, merge. The
  strided form (`downsample`: DownSamplerB) reduces with a 3x3 stride-2 conv and never adds
  its input; the other adds it where `add` (DilatedParllelResidualBlockB). BN + PReLU last
  (named `bn`, `act`, as the strided form; the code nests the other's in a BR, see
  convert/espnet.py)."""
  features: int
  add: bool = True
  downsample: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    n = self.features // 5
    n1 = self.features - 4 * n
    reduced = _conv(n, x.shape[-1], 3 if self.downsample else 1, 2 if self.downsample else 1,
                    dtype=self.dtype, name='c1')(x)
    branches = [_conv(n1 if d == 1 else n, n, 3, dilation=d, dtype=self.dtype, name=f'd{d}')(
        reduced) for d in DILATIONS]
    fused = [branches[1]]
    for branch in branches[2:]:
      fused.append(fused[-1] + branch)
    y = jnp.concatenate([branches[0], *fused], axis=-1)
    if self.add and not self.downsample:
      y = x + y
    return _bn_prelu(y, train, self.dtype, 'bn', 'act')


def _image_pyramid(images: jax.Array) -> tuple[jax.Array, jax.Array]:
  """InputProjectionA: the image average-pooled (3x3, stride 2, padding 1) once and twice."""
  once = avg_pool(images, 3, 2, padding=1)
  return once, avg_pool(once, 3, 2, padding=1)


class ESPNetEncoder(nn.Module):
  """ESPNet-C's network: the `backbone` of both variants (the code's `encoder` in ESPNet), so
  that ESPNet can start from trained ESPNet-C weights (`config.model.backbone_pretrained`), as
  the paper trains it."""
  num_outputs: int
  stage2_blocks: int = 2
  stage3_blocks: int = 8
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> tuple[jax.Array, ...]:
    """(level1's output (1/2), b2's (1/4), the classifier's logits (1/8))."""
    dtype = self.dtype
    x = images.astype(dtype)
    image_2x, image_4x = _image_pyramid(x)
    level1 = ConvBNPReLU(16, 3, 2, dtype, name='level1')(x, train)
    x = BNPReLU(dtype, name='b1')(jnp.concatenate([level1, image_2x], axis=-1), train)
    first = x = ESPModule(64, downsample=True, dtype=dtype, name='level2_0')(x, train)
    for i in range(self.stage2_blocks):
      x = ESPModule(64, dtype=dtype, name=f'level2_block{i}')(x, train)
    level2 = BNPReLU(dtype, name='b2')(jnp.concatenate([x, first, image_4x], axis=-1), train)
    first = x = ESPModule(128, downsample=True, dtype=dtype, name='level3_0')(level2, train)
    for i in range(self.stage3_blocks):
      x = ESPModule(128, dtype=dtype, name=f'level3_block{i}')(x, train)
    level3 = BNPReLU(dtype, name='b3')(jnp.concatenate([first, x], axis=-1), train)
    logits = _conv(self.num_outputs, 256, 1, dtype=dtype, name='classifier')(level3)
    return level1, level2, logits


class ESPNetC(nn.Module):
  """ESPNet-C (the code's ESPNet_Encoder): logits at 1/8."""
  num_classes: int
  stage2_blocks: int = 2
  stage3_blocks: int = 8
  void_output: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> dict:
    *_, logits = ESPNetEncoder(self.num_classes + int(self.void_output), self.stage2_blocks,
                               self.stage3_blocks, self.dtype, name='backbone')(images, train)
    return {'logits': logits[..., :self.num_classes].astype(jnp.float32), 'aux': []}


def _up2(x: jax.Array, link_hw: tuple[int, int], dtype: Any, name: str) -> jax.Array:
  """A 2x2 stride-2 transposed conv without bias (PyTorch's init), cropped to `link_hw`."""
  c = x.shape[-1]
  y = conv_transpose2d(c, 2, 2, use_bias=False, kernel_init=torch_default_init(2 * 2 * c),
                       dtype=dtype, name=name)(x)
  return y[:, :link_hw[0], :link_hw[1]]


class ESPNet(nn.Module):
  """ESPNet: ESPNet-C (`encoder`) and the light decoder; logits at the input's size."""
  num_classes: int
  stage2_blocks: int = 2
  stage3_blocks: int = 8
  void_output: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> dict:
    c = self.num_classes + int(self.void_output)
    level1, level2, encoded = ESPNetEncoder(c, self.stage2_blocks, self.stage3_blocks,
                                            self.dtype, name='backbone')(images, train)
    y = batch_norm(train, self.dtype, epsilon=BN_EPS, name='br')(encoded)
    y = _up2(y, level2.shape[1:3], self.dtype, 'up_l3')
    projected = _conv(c, level2.shape[-1], 1, dtype=self.dtype, name='level3_C')(level2)
    y = BNPReLU(self.dtype, name='combine_l2_l3_0')(jnp.concatenate([projected, y], axis=-1),
                                                    train)
    y = ESPModule(c, add=False, dtype=self.dtype, name='combine_l2_l3_1')(y, train)
    y = BNPReLU(self.dtype, name='up_l2_1')(_up2(y, level1.shape[1:3], self.dtype, 'up_l2_0'),
                                            train)
    y = ConvBNPReLU(c, 3, dtype=self.dtype, name='conv')(jnp.concatenate([y, level1], axis=-1),
                                                         train)
    logits = _up2(y, images.shape[1:3], self.dtype, 'classifier')
    return {'logits': logits[..., :self.num_classes].astype(jnp.float32), 'aux': []}


def espnet(variant: str, num_classes: int, *, dtype: Any = jnp.float32,
           **overrides: Any) -> nn.Module:
  """ESPNet ('espnet') or ESPNet-C ('espnet_c'); `overrides` replace stage2_blocks (alpha2),
  stage3_blocks (alpha3) or void_output."""
  if variant not in ESPNET_VARIANTS:
    raise ValueError(f'Unknown ESPNet variant {variant!r}; expected one of '
                     f'{sorted(ESPNET_VARIANTS)}.')
  model = ESPNetC if variant == 'espnet_c' else ESPNet
  return model(num_classes, dtype=dtype, **overrides)
