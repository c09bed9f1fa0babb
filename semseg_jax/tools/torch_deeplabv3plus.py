"""DeepLabV3+ R50-D8 in plain PyTorch, built as mmsegmentation 1.x builds
`deeplabv3plus_r50-d8` (ResNetV1c-50 with strides (1, 2, 1, 1), dilations (1, 1, 2, 4) and
contracted dilation; DepthwiseSeparableASPPHead of 512 channels with a 48-channel stride-4
skip; auxiliary FCNHead of 256 channels on stage 3): the PyTorch side of
`semseg_jax.tools.compare_speed`. mmseg itself needs mmcv's compiled operators, which have no
wheel for current PyTorch, so the structure is written out here; its parameter count equals
mmseg's and semseg_jax's model's (tests/tools/test_compare_speed.py).
"""

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, groups: int = 1, relu: bool = True) -> nn.Sequential:
  """mmcv's ConvModule: conv without bias, BatchNorm, ReLU."""
  layers = [nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                      dilation * (kernel_size // 2), dilation, groups, bias=False),
            nn.BatchNorm2d(out_channels)]
  return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


def separable(in_channels: int, out_channels: int, dilation: int = 1) -> nn.Sequential:
  """mmseg's DepthwiseSeparableConvModule: a 3x3 depthwise ConvModule, a 1x1 ConvModule."""
  return nn.Sequential(conv_bn_relu(in_channels, in_channels, 3, dilation=dilation,
                                    groups=in_channels),
                       conv_bn_relu(in_channels, out_channels, 1))


class Bottleneck(nn.Module):
  """ResNet's bottleneck, stride on the 3x3 conv (mmseg's style='pytorch')."""

  def __init__(self, in_channels: int, width: int, stride: int, dilation: int,
               downsample: bool):
    super().__init__()
    self.conv1 = conv_bn_relu(in_channels, width, 1)
    self.conv2 = conv_bn_relu(width, width, 3, stride, dilation)
    self.conv3 = conv_bn_relu(width, width * 4, 1, relu=False)
    self.downsample = (conv_bn_relu(in_channels, width * 4, 1, stride, relu=False)
                       if downsample else nn.Identity())

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return F.relu(self.conv3(self.conv2(self.conv1(x))) + self.downsample(x))


class ResNetV1cD8(nn.Module):
  """ResNetV1c-50 (deep stem of three 3x3 convs) with output stride 8."""

  def __init__(self, blocks=(3, 4, 6, 3), strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4)):
    super().__init__()
    self.stem = nn.Sequential(conv_bn_relu(3, 32, 3, 2), conv_bn_relu(32, 32, 3),
                              conv_bn_relu(32, 64, 3), nn.MaxPool2d(3, 2, 1))
    stages, in_channels = [], 64
    for i, (count, stride, dilation) in enumerate(zip(blocks, strides, dilations)):
      width = 64 * 2 ** i
      # contract_dilation: the first block of a dilated stage uses half the dilation.
      first = dilation // 2 if dilation > 1 else 1
      layers = [Bottleneck(in_channels, width, stride, first, True)]
      layers += [Bottleneck(width * 4, width, 1, dilation, False) for _ in range(count - 1)]
      stages.append(nn.Sequential(*layers))
      in_channels = width * 4
    self.stages = nn.ModuleList(stages)

  def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
    x, features = self.stem(x), []
    for stage in self.stages:
      x = stage(x)
      features.append(x)
    return features


class DeepLabV3PlusR50D8(nn.Module):
  """mmseg's EncoderDecoder(ResNetV1c-50-D8, DepthwiseSeparableASPPHead, FCNHead aux): forward
  returns the stride-4 logits, and in training also the stride-8 auxiliary logits."""

  def __init__(self, num_classes: int, dilations=(1, 12, 24, 36)):
    super().__init__()
    self.backbone = ResNetV1cD8()
    self.image_pool = conv_bn_relu(2048, 512, 1)
    self.aspp = nn.ModuleList([conv_bn_relu(2048, 512, 1)] +
                              [separable(2048, 512, d) for d in dilations[1:]])
    self.bottleneck = conv_bn_relu(512 * (len(dilations) + 1), 512, 3)
    self.c1_bottleneck = conv_bn_relu(256, 48, 1)
    self.sep_bottleneck = nn.Sequential(separable(512 + 48, 512), separable(512, 512))
    self.classifier = nn.Sequential(nn.Dropout2d(0.1), nn.Conv2d(512, num_classes, 1))
    self.aux = nn.Sequential(conv_bn_relu(1024, 256, 3), nn.Dropout2d(0.1),
                             nn.Conv2d(256, num_classes, 1))

  def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
    c1, _, c3, c4 = self.backbone(images)
    size = c4.shape[2:]
    pooled = self.image_pool(F.adaptive_avg_pool2d(c4, 1))
    branches = [F.interpolate(pooled, size, mode='bilinear', align_corners=False)]
    branches += [branch(c4) for branch in self.aspp]
    x = self.bottleneck(torch.cat(branches, 1))
    x = F.interpolate(x, c1.shape[2:], mode='bilinear', align_corners=False)
    x = self.sep_bottleneck(torch.cat([x, self.c1_bottleneck(c1)], 1))
    logits = self.classifier(x)
    return (logits, self.aux(c3)) if self.training else (logits,)
