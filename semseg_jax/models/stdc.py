"""STDC-Seg (Fan et al., "Rethinking BiSeNet For Real-time Semantic Segmentation", CVPR 2021), as
mmsegmentation 1.x configures it (`configs/_base_/models/stdc.py`, `configs/stdc/*`), checked
against the official code (MichaelFan01/STDC-Seg, `models/model_stages.py`, `train.py`).

Network (paper Fig. 4): the STDC backbone with its context path and feature fusion module
(`backbones/stdc.py`), then
- decode head: FCNHead on the fused stride-8 feature (in_index 3): one 3x3 ConvModule of 256
  channels, no input concatenation, Dropout2d(0.1), 1x1 classifier;
- two auxiliary FCN heads (the paper's "seg heads" on the context path): one 3x3 ConvModule of
  64 channels + dropout 0.1 + classifier on the stride-8 context (in_index 2) and on the
  stride-16 context (in_index 1); both trained with OHEM cross-entropy, weight 1.0;
- detail head (Sec. 3.3, "detail aggregation module"): the same FCNHead form (64 channels) on
  the stride-8 STDC feature (in_index 0), one output channel of boundary logits, trained with
  the detail loss of `semseg_jax/losses/detail.py` (BCE + Dice on Laplacian boundary targets).
The auxiliary and detail heads run in training only; at inference only the decode head's
stride-8 logits are produced.

Output: {'logits': [N, h, w, C] at stride 8, 'aux': [stride-8 context logits, stride-16 context
logits] (training), 'detail': [[N, h, w, 1] boundary logits at stride 8] (training)}; both lists
are empty at inference. h = ceil(ceil(ceil(H / 2) / 2) / 2) (three stride-2, padding-1 convs).

Parameter names are mmseg's (its auxiliary_head.0/.1 are auxiliary_heads_0/1, its STDCHead,
auxiliary_head.2, is detail_head).

Variants: 'stdc1' (STDCNet813: 2, 2, 2 modules per stage), 'stdc2' (STDCNet1446: 4, 5, 3).

Deviations:
- mmseg's STDCHead has num_classes=2 and no out_channels, so it outputs 2 channels (one-hot
  sigmoid BCE over both, and a Dice over both channels at once); the official code and the paper
  use a single boundary-logit channel, as here (65 parameters fewer: 64 weights + 1 bias).
- The official heads' classifiers have no bias and no dropout; mmseg's (followed here) have both.
- mmseg resizes the decode head's logits with align_corners=True (decode_head.align_corners) in
  its loss and at inference, and the detail logits likewise in the detail loss; the auxiliary
  heads use align_corners=False. `losses/detail.py` follows mmseg for the detail logits; the
  segmentation logits are resized by the framework's loss/evaluator.
- mmseg's STDCHead also holds a constant 3-element fusion kernel as a frozen nn.Parameter; here
  it is a constant of the loss, not a parameter.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models.backbones.stdc import STDC_ARCHS, STDCContextPath
from semseg_jax.models.heads.fcn_head import FCNHead


class STDCSeg(nn.Module):
  """STDC-Seg with `num_classes` outputs; every width of the reference is a field, so tests can
  shrink them."""
  num_classes: int
  stage_depths: Sequence[int] = STDC_ARCHS['stdc1']
  stage_channels: Sequence[int] = (32, 64, 256, 512, 1024)
  num_convs: int = 4
  context_channels: int = 128
  fusion_channels: int = 256
  channels: int = 256
  aux_channels: int = 64
  detail_channels: int = 64
  dropout_rate: float = 0.1
  aux_head: bool = True
  dtype: Any = jnp.float32

  def _fcn_head(self, num_classes: int, in_index: int, channels: int, dropout_rate: float,
                name: str) -> FCNHead:
    return FCNHead(num_classes, in_index=in_index, channels=channels, num_convs=1,
                   concat_input=False, dropout_rate=dropout_rate, dtype=self.dtype, name=name)

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> dict[str, Any]:
    features = STDCContextPath(self.stage_depths, self.stage_channels, self.num_convs,
                               self.context_channels, self.fusion_channels, self.dtype,
                               name='backbone')(images, train)
    logits = self._fcn_head(self.num_classes, 3, self.channels, self.dropout_rate,
                            'decode_head')(features, train)
    aux, detail = [], []
    if self.aux_head and (train or self.is_initializing()):
      aux = [self._fcn_head(self.num_classes, in_index, self.aux_channels, 0.1,
                            f'auxiliary_heads_{i}')(features, train).astype(jnp.float32)
             for i, in_index in enumerate((2, 1))]
      detail = [self._fcn_head(1, 0, self.detail_channels, 0.1, 'detail_head')(
          features, train).astype(jnp.float32)]
    return {'logits': logits.astype(jnp.float32), 'aux': aux if train else [],
            'detail': detail if train else []}


def stdc(variant: str, num_classes: int, *, dtype: Any = jnp.float32,
         dropout_rate: float = 0.1, aux_head: bool = True, **overrides: Any) -> STDCSeg:
  """STDC-Seg ('stdc1' or 'stdc2') with `num_classes` outputs. `aux_head` adds the two
  auxiliary FCN heads and the detail head; `overrides` replace fields of STDCSeg (channels,
  stage_channels, context_channels, ...)."""
  if variant not in STDC_ARCHS:
    raise ValueError(f'STDC variant {variant!r}; expected one of {sorted(STDC_ARCHS)}.')
  fields = {'num_classes': num_classes, 'stage_depths': STDC_ARCHS[variant], 'dtype': dtype,
            'dropout_rate': dropout_rate, 'aux_head': aux_head, **overrides}
  return STDCSeg(**fields)
