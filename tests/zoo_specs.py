"""Tiny instances of every model of the zoo, shared by the zoo tests: (model name, variant,
constructor overrides, input (h, w), expected logits (h, w), number of aux outputs in training).
"""

import flax.linen as nn

from semseg_jax import models

NUM_CLASSES = 5

# name -> (model, variant, overrides, input hw, logits hw, aux count)
TINY = {
    'segformer': ('segformer', 'b0', {'depths': (1, 1, 1, 1), 'widths': (16, 32, 40, 64),
                                      'decoder_dim': 32}, (32, 32), (8, 8), 0),
    'unet': ('unet', 'bn', {'base_width': 8, 'depth': 3}, (45, 61), (45, 61), 0),
    'unet_paper': ('unet', 'paper', {'base_width': 8, 'depth': 3}, (32, 40), (32, 40), 0),
    'enet': ('enet', 'enet', {}, (45, 61), (45, 61), 0),
    'fcn8s': ('fcn', 'vgg16-8s', {'widths': (8, 16, 16, 32, 32), 'fc_features': 32}, (45, 61),
              (45, 61), 0),
    'bayesian_segnet': ('segnet', 'bayesian', {'widths': (8, 16, 16, 32, 32)}, (21, 27),
                        (21, 27), 0),
    'fcn_r18': ('fcn', 'r18-d8', {'channels': 16}, (33, 47), (5, 6), 1),
    'pspnet': ('pspnet', 'r18-d8', {'channels': 16}, (33, 47), (5, 6), 1),
    'deeplabv3': ('deeplabv3', 'r18-d16', {'channels': 16}, (33, 47), (3, 3), 1),
    'deeplabv3plus': ('deeplabv3plus', 'r18-d8', {'channels': 16, 'c1_channels': 8}, (33, 47),
                      (9, 12), 1),
    'deeplabv3plus_mv2': ('deeplabv3plus', 'mv2-d8', {'channels': 16, 'c1_channels': 8},
                          (33, 47), (9, 12), 1),
    'upernet': ('upernet', 'r18', {'channels': 16}, (37, 53), (10, 14), 1),
    'gcn': ('gcn', 'r18', {'kernel_size': 7}, (37, 53), (37, 53), 0),
    'duc_hdc': ('duc_hdc', 'r18-hdc', {}, (37, 53), (19, 27), 0),
}


def build(key: str) -> nn.Module:
  model, variant, overrides, *_ = TINY[key]
  return models.MODELS[model](variant, NUM_CLASSES, **overrides)
