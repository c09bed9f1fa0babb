"""SegNeXt (Guo et al., "SegNeXt: Rethinking Convolutional Attention Design for Semantic
Segmentation", NeurIPS 2022): the MSCAN encoder (backbones/mscan.py) and the LightHamHead
decoder (heads/ham_head.py) in mmsegmentation's EncoderDecoder; logits at stride 8, no auxiliary
head.

Reference implementation: mmsegmentation 1.x (`configs/segnext/segnext_mscan-{t,s,b,l}_1xb16-
adamw-160k_ade20k-512x512.py`), cross-checked with the official Visual-Attention-Network/SegNeXt
(`local_configs/segnext/{tiny,small,base,large}/*.py`, ADE20K and Cityscapes).

Benchmark settings per variant (the constructor's defaults):
  variant  widths              depths         mlp_ratios  drop_path  head channels  NMF rank
  't'      (32, 64, 160, 256)  (3, 3, 5, 2)   (8,8,4,4)   0.1        256            16
  's'      (64, 128, 320, 512) (2, 2, 4, 2)   (8,8,4,4)   0.1        256            16
  'b'      (64, 128, 320, 512) (3, 3, 12, 3)  (8,8,4,4)   0.1        512            64
  'l'      (64, 128, 320, 512) (3, 5, 27, 3)  (8,8,4,4)   0.3        1024           64
(head channels = ham_channels = channels; the head reads stages 2..4, GroupNorm(32); decoder
dropout 0.1). The NMF rank of B and L is the official configs' (default MD_R=64); mmseg 1.x's B
and L configs inherit MD_R=16 from T's. The rank holds no parameters.

Parameter counts (ADE20K, 150 classes; equal to the reference modules' counts):
T 4,263,414; S 13,932,886; B 27,636,310; L 48,926,550 (paper: 4.3M, 13.9M, 27.6M, 48.9M).

Departures from the references: those of backbones/mscan.py and heads/ham_head.py.
"""

from typing import Any

import jax.numpy as jnp

from semseg_jax.models.backbones.mscan import MSCAN_VARIANTS, mscan_from_variant
from semseg_jax.models.heads.ham_head import LightHamHead
from semseg_jax.models.layers import EncoderDecoder

BACKBONE_FIELDS = ('widths', 'depths', 'mlp_ratios', 'scan_min_depth')  # MSCAN's overrides.

# Decode head settings per variant (configs named in the module docstring).
SEGNEXT_HEADS: dict[str, dict[str, int]] = {
    't': dict(channels=256, ham_channels=256, rank=16),
    's': dict(channels=256, ham_channels=256, rank=16),
    'b': dict(channels=512, ham_channels=512, rank=64),
    'l': dict(channels=1024, ham_channels=1024, rank=64),
}


def segnext(variant: str, num_classes: int, *, dtype: Any = jnp.float32,
            dropout_rate: float = 0.1, drop_path_rate: float | None = None,
            **overrides: Any) -> EncoderDecoder:
  """SegNeXt-T/S/B/L ('t', 's', 'b', 'l') with `num_classes` outputs.

  drop_path_rate None takes the variant's benchmark rate (0.3 for 'l', else 0.1). `overrides`
  replace MSCAN's widths, depths and mlp_ratios, and LightHamHead fields (channels,
  ham_channels, rank, train_steps, eval_steps, one_step_gradient, num_groups, ...).
  """
  if variant not in MSCAN_VARIANTS:
    raise ValueError(f'Unknown SegNeXt variant {variant!r}; expected one of '
                     f'{list(MSCAN_VARIANTS)}.')
  backbone_overrides = {k: overrides.pop(k) for k in BACKBONE_FIELDS if k in overrides}
  backbone = mscan_from_variant(variant, drop_path_rate, dtype=dtype, **backbone_overrides)
  head = LightHamHead(num_classes=num_classes, dropout_rate=dropout_rate, dtype=dtype,
                      **{**SEGNEXT_HEADS[variant], **overrides})
  return EncoderDecoder(backbone=backbone, decode_head=head)
