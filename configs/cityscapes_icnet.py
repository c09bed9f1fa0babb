"""ICNet (Zhao et al. 2018) on Cityscapes with mmsegmentation's recipe:
icnet_<backbone>-d8[-in1k-pre]_4xb2-<80k|160k>_cityscapes-832x832 (mmseg's CNN recipe,
configs/cnn_recipes.py: SGD lr 0.01, momentum 0.9, weight decay 5e-4, poly 0.9 to 1e-4, batch 8;
832x832 crops of (2048, 1024) x [0.5, 2] capped at 75% of one class, flips, photometric
distortion; whole-image test at (2048, 1024)). Cross-entropy on the decode head, and with weight
0.4 on each cascade label guidance head (1/16 and 1/8); no dropout before the decode head's
classifier (0.1 in the guidance heads').

--config=configs/cityscapes_icnet.py:<backbone>,<schedule>: <backbone> one of r18, r50
(default), r101 (ResNetV1c-D8); <schedule> 80k (default) or 160k. mmseg's "in1k-pre" results
start the trunk from ImageNet: add --config.model.backbone_pretrained=<resnet<depth>_v1c file>
(open-mmlab's, e.g. resnet50_v1c-2cccc1ad.pth); without it the whole network starts from
scratch, as mmseg's other ICNet results. The published weights of either kind load with
--config.model.pretrained.
"""

import ml_collections

from configs import cnn_recipes
from configs import common

BACKBONES = {'r18': 'r18-d8', 'r50': 'r50-d8', 'r101': 'r101-d8'}
SCHEDULES = {'80k': 80_000, '160k': 160_000}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, variant=common.Choice('r50', BACKBONES),
                         schedule=common.Choice('80k', SCHEDULES), smoke=False)
  config = cnn_recipes.mmseg_cnn('cityscapes', 'icnet', arg.variant)
  config.augment.crop_size = (832, 832)
  config.model.dropout_rate = 0.0
  cnn_recipes.training_length(config, 8, arg.schedule, arg.schedule // 10, num_workers=8)
  return common.maybe_smoke(config, arg)
