"""The backbone + decode head (+ auxiliary heads) network that most models of the zoo are.

Parameters live under `backbone/`, `decode_head/` and `auxiliary_heads_<i>/`, as in
mmsegmentation's EncoderDecoder (so per-part learning-rate regexes and weight converters can
name them).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class EncoderDecoder(nn.Module):
  """backbone(images) -> a list of features; decode_head(features) -> logits.

  Auxiliary heads also read the backbone's features; their logits are computed only when
  training (they feed the loss and nothing else), so `aux` is empty at inference. A head whose
  logits must cover the image exactly (GCN, DUC) is called as decode_head(features, image_hw)
  with `decode_head_takes_image_hw`.
  """
  backbone: nn.Module
  decode_head: nn.Module
  auxiliary_heads: Sequence[nn.Module] = ()
  decode_head_takes_image_hw: bool = False

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> dict[str, Any]:
    features = self.backbone(images, train=train)
    if self.decode_head_takes_image_hw:
      logits = self.decode_head(features, images.shape[1:3], train=train)
    else:
      logits = self.decode_head(features, train=train)
    aux = []
    if train or self.is_initializing():  # Their parameters exist whatever mode init runs in.
      aux = [head(features, train=train).astype(jnp.float32) for head in self.auxiliary_heads]
    return {'logits': logits.astype(jnp.float32), 'aux': aux if train else []}
