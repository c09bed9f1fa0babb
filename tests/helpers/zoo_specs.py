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
    'enet': ('enet', 'enet', {'stage1_blocks': 1, 'dilated_stages': 1}, (45, 61), (45, 61), 0),
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
    'deeplabv3_mobilenet': ('deeplabv3_mobilenet', '0.35-os8', {'head_channels': 16},
                            (37, 53), (5, 7), 0),
    'upernet': ('upernet', 'r18', {'channels': 16}, (37, 53), (10, 14), 1),
    'gcn': ('gcn', 'r18', {'kernel_size': 7}, (37, 53), (37, 53), 0),
    'duc_hdc': ('duc_hdc', 'r18-hdc', {}, (37, 53), (19, 27), 0),
    'bisenetv1': ('bisenetv1', 'r18', {'spatial_channels': (8, 8, 8, 16), 'context_channels': 16,
                                       'out_channels': 16, 'channels': 16,
                                       'aux_channels': (8, 8)}, (37, 53), (5, 7), 2),
    'bisenetv2': ('bisenetv2', 'bisenetv2', {'detail_channels': (8, 8, 16),
                                             'semantic_channels': (8, 8, 16, 16),
                                             'bga_channels': 16, 'channels': 16,
                                             'aux_channels': (8, 8, 8, 8)}, (37, 53), (5, 7), 4),
    'regseg': ('regseg', 'exp48_decoder26', {'widths': (8, 16, 16, 32, 48), 'depths': (1, 1),
                                             'group_width': 8, 'stage16_dilations': ((1, 4),),
                                             'decoder_widths': (16, 8, 16, 16)}, (45, 61),
               (12, 16), 0),
    'segnext': ('segnext', 't', {'widths': (8, 16, 24, 32), 'depths': (1, 1, 1, 1),
                                 'channels': 16, 'ham_channels': 16, 'rank': 4, 'num_groups': 8},
                (64, 64), (8, 8), 0),
    'stdc': ('stdc', 'stdc1', {'stage_depths': (2, 1, 1), 'stage_channels': (8, 16, 32, 64, 128),
                               'context_channels': 16, 'fusion_channels': 32, 'channels': 16,
                               'aux_channels': 8, 'detail_channels': 8}, (64, 96), (8, 12), 2),
    'topformer': ('topformer', 't', {'channels': 16, 'depth': 1,
                                     'blocks': ((3, 1, 16, 1), (3, 3, 16, 2), (5, 3, 24, 2),
                                                (3, 3, 32, 2), (5, 3, 40, 2)),
                                     'token_indices': (1, 2, 3, 4)}, (64, 64), (8, 8), 0),
    'sfnet': ('sfnet', 'r18', {'fpn_dim': 16, 'aux_head': True}, (37, 53), (10, 14), 3),
    'linknet': ('linknet', 'r18', {}, (37, 53), (37, 53), 0),
    'erfnet': ('erfnet', 'paper', {'stage1_blocks': 1, 'dilated_sequences': 1}, (37, 53),
               (37, 53), 0),
    'cgnet': ('cgnet', 'paper', {'num_blocks': (2, 2), 'dropout_rate': 0.1}, (37, 53),
              (37, 53), 0),
    'icnet': ('icnet', 'r18-d8', {'light_channels': 8, 'branch_channels': (8, 16, 16),
                                  'psp_channels': 16, 'fusion_channels': 16}, (37, 53), (5, 7),
              2),
    'espnet': ('espnet', 'espnet', {'stage2_blocks': 1, 'stage3_blocks': 1}, (37, 53), (37, 53),
               0),
    'edanet': ('edanet', 'edanet', {'stage1_dilations': (1, 2), 'stage2_dilations': (2, 4)},
               (37, 53), (37, 53), 0),
    'drn': ('drn', 'd22', {'widths': (8, 8, 16, 16, 16, 32, 32, 32)}, (37, 53), (37, 53), 0),
    'fc_densenet': ('fc_densenet', '56', {'layers_per_block': (2, 1, 2), 'growth_rate': 4,
                                          'first_conv_features': 8}, (37, 53), (37, 53), 0),
    'lw_refinenet': ('lw_refinenet', 'r50', {'depth': 18}, (37, 53), (10, 14), 0),
    'refinenet': ('refinenet', 'r101', {'depth': 18}, (37, 53), (10, 14), 0),
    'deconvnet': ('deconvnet', 'vgg16', {'widths': (4, 6, 8, 10, 12), 'fc_features': 12,
                                         'fc_kernel': 3}, (70, 101), (70, 101), 0),
}

# The tiny models whose training forward draws from the 'dropout' rng (dropout, drop path,
# SegNeXt's random NMF bases): the zoo test checks that another key changes their train step
# and leaves every other model's (GCN, DUC-HDC, RegSeg, LinkNet, ESPNet, DRN, DeconvNet: no
# dropout in their references) unchanged.
RANDOM = frozenset(TINY) - {'gcn', 'duc_hdc', 'regseg', 'linknet', 'espnet', 'drn',
                             'deconvnet'}


def build(key: str) -> nn.Module:
  model, variant, overrides, *_ = TINY[key]
  return models.MODELS[model](variant, NUM_CLASSES, **overrides)
