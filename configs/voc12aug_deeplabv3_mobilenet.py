"""DeepLabV3 on MobileNetV2 in TensorFlow DeepLab's layout (Hugging Face's
MobileNetV2ForSemanticSegmentation, the google/deeplabv3_mobilenet_v2_1.0_513 checkpoint) on
Pascal VOC 2012 + SBD (train_aug): MobileNetV2 at output stride 8 with TF "SAME" padding, head of
image pooling + one 1x1 branch (models/deeplabv3_mobilenet.py).

Its main use is evaluating or fine-tuning the converted checkpoint:
  --config.model.pretrained=<its HF directory, or `python -m semseg_jax.convert` output>.
Images are normalised as TF DeepLab feeds this network, x / 127.5 - 1 (HF's processor: mean
and std 0.5 on 0..1), also when training from scratch. The training recipe is mmsegmentation's
VOC CNN recipe (configs/cnn_recipes.py), not TF DeepLab's, which pretrained on COCO first; the
model has no auxiliary head.
"""

import ml_collections

from configs import common
from configs import cnn_recipes


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, smoke=False)
  config = cnn_recipes.mmseg_cnn('voc12aug', 'deeplabv3_mobilenet', '1.0-os8')
  config.model.aux_head = False
  config.data.mean = (127.5, 127.5, 127.5)
  config.data.std = (127.5, 127.5, 127.5)
  return common.maybe_smoke(config, arg)
