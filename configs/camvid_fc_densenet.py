"""FC-DenseNet (Jégou et al. 2017) on CamVid, the authors' setting (SimJeg/FC-DenseNet
config/FC-DenseNet103.py, train.py; paper Sec. 4):
`--config=configs/camvid_fc_densenet.py:<variant>` with <variant> 103 (default), 67 or 56.

11 classes (void ignored), SegNet's 367 / 101 / 233 split; random 224x224 crops and horizontal
flips; RMSprop (Lasagne's: rho 0.9, eps 1e-6 inside the square root) at lr 1e-3, multiplied by
0.995 after every epoch; L2 weight decay 1e-4 as a loss term (gradient 2e-4 x the weights) on
the conv weights and BN scales (Lasagne's regularizable parameters: not on biases and BN
offsets); batch 3 for at most 750 epochs (123 batches each: 92,250 steps), from scratch (HeUniform
init); cross-entropy averaged over the labelled pixels; dropout 0.2. Evaluation on the whole
360x480 frames (the paper's numbers are the test split's: --config.data.eval_split=test).

Differences: the code stops early once the validation mIoU has not improved for 150 epochs
(here: the whole length, with evaluations every 10 epochs to pick the checkpoint); the paper
then fine-tunes on full 360x480 images at batch 1 (not in the code's config): run this config
again with --config.model.pretrained=<the first run's checkpoint>
--config.augment.crop_size="(360, 480)" --config.train.batch_size=1; the input normalisation
(not given) is the dataset's mean and std.
"""

import ml_collections

from configs import cnn_recipes
from configs import common
from configs import datasets
from configs import default

STEPS_PER_EPOCH = 123  # ceil(367 / 3)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(__file__, arg, variant=common.Choice('103', ('103', '67', '56')),
                         smoke=False)
  config = default.get_config()
  datasets.camvid(config)
  config.augment.resize_scale = ()
  config.augment.ratio_range = (1.0, 1.0)
  config.augment.crop_size = (224, 224)
  config.augment.cat_max_ratio = 1.0
  config.augment.photometric = False
  config.model.name = 'fc_densenet'
  config.model.variant = arg.variant
  config.model.dropout_rate = 0.2
  config.model.drop_path_rate = 0.0
  config.loss.logits = (('cross_entropy', 1.0, {}),)
  config.optimizer.name = 'rmsprop'
  config.optimizer.lr = 1e-3
  config.optimizer.momentum = 0.0
  config.optimizer.rms_decay = 0.9
  config.optimizer.eps = 1e-6
  config.optimizer.rms_eps_in_sqrt = True
  config.optimizer.weight_decay = 2e-4  # d(1e-4 * sum w^2) / dw.
  config.optimizer.no_decay_patterns = (r'/bias$',)
  config.optimizer.lr_multipliers = ()
  config.schedule.name = 'step'
  config.schedule.warmup_steps = 0
  config.schedule.step_size = STEPS_PER_EPOCH
  config.schedule.step_gamma = 0.995
  cnn_recipes.training_length(config, 3, 750 * STEPS_PER_EPOCH, 10 * STEPS_PER_EPOCH,
                              num_workers=4)
  return common.maybe_smoke(config, arg)
