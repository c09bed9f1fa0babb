"""ERFNet (Romera et al. 2018) on Cityscapes: `--config=configs/cityscapes_erfnet.py` (the
authors' PyTorch code's network and setting, Eromera/erfnet_pytorch train/main.py) or `:mmseg`
(mmsegmentation's erfnet_fcn_4xb4-160k_cityscapes-512x1024: its network and CNN recipe,
configs/cnn_recipes.py, at batch 16 for 160k steps, from scratch; the form of its published
weights, which `--config.model.pretrained` reads).

The paper's setting:

19 classes on whole frames resized to 1024x512, random horizontal flip; PyTorch's Adam
(betas 0.9 / 0.999, eps 1e-8, L2 weight decay 1e-4 in the gradient) at lr 5e-4 with poly decay
(power 0.9) to 0 over 150 epochs of the 2975 training images at batch 6 (496 steps each: 74,400
steps), from scratch; cross-entropy weighted by the code's fixed per-class weights (its
decoder-stage list, ENet-style weights of Cityscapes' training labels), averaged as PyTorch
does (divided by the labelled pixels' weights); channel dropout 0.3 in the dilated blocks, 0.03
in the 64-channel ones.

Differences: the code trains in two stages (the encoder alone on 1/8-size labels with its own
weights for 150 epochs, then the whole network, each with a fresh Adam); this trains the whole
network once. It steps the poly decay once per epoch (here per step), also translates images by
-2..2 pixels (not available here), feeds inputs in [0, 1] without normalisation (here the
dataset's mean and std), and scores its 1024x512 predictions against 1024x512 labels (here the
logits are resized to the full-resolution labels). Its void class (a 20th output, weight 0) is
the ignore label here.
"""

import ml_collections

from configs import common
from configs import cnn_recipes
from configs import datasets
from configs import default

# train/main.py's `weight` for the decoder stage (classes 0..18; its void class has weight 0).
CLASS_WEIGHTS = (2.8149201869965, 6.9850029945374, 3.7890393733978, 9.9428062438965,
                 9.7702074050903, 9.5110931396484, 10.311357498169, 10.026463508606,
                 4.6323022842407, 9.5608062744141, 7.8698215484619, 9.5168733596802,
                 10.373730659485, 6.6616044044495, 10.260489463806, 10.287888526917,
                 10.289801597595, 10.405355453491, 10.138095855713)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, variant=common.Choice('paper', ('paper', 'mmseg')),
                         smoke=False)
  if arg.variant == 'mmseg':
    config = cnn_recipes.mmseg_cnn('cityscapes', 'erfnet', 'mmseg')
    config.model.aux_head = False
    config.loss.aux = ()
    cnn_recipes.training_length(config, 16, 160_000, 16_000, num_workers=8)
    return common.maybe_smoke(config, arg)
  config = default.get_config()
  datasets.cityscapes_half_frames(config)
  config.model.name = 'erfnet'
  config.model.variant = 'paper'
  config.model.dropout_rate = 0.3
  config.model.drop_path_rate = 0.0
  config.loss.class_weights = CLASS_WEIGHTS
  config.loss.logits = (('cross_entropy', 1.0, {'average': 'weight'}),)  # NLLLoss2d's mean.
  cnn_recipes.adam(config, lr=5e-4, weight_decay=1e-4)
  cnn_recipes.poly(config, power=0.9, min_lr=0.0)
  cnn_recipes.training_length(config, 6, 74_400, 4_960, num_workers=8)
  return common.maybe_smoke(config, arg)
