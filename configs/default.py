"""Every configuration field of semseg_jax, with its default and a one-line comment.

Other configs start from `get_config()` here and change only what differs. The returned
config is locked: assigning a field that is not declared here is an error naming it, both in
config files and in `--config.<field>=<value>` overrides. Arguments (configs/common.py): smoke.
"""

import ml_collections
from ml_collections import config_dict

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The base config: SegFormer-B0 on the built-in synthetic dataset."""
  arg = common.parse_arg(__file__, arg, smoke=False)
  config = ml_collections.ConfigDict()
  config.seed = 0  # One seed for parameters, dropout and data order/augmentation.

  # Model: `name` is a key of semseg_jax.models.MODELS.
  config.model = ml_collections.ConfigDict()
  config.model.name = 'segformer'  # Architecture.
  config.model.variant = 'b0'  # Size / backbone within the architecture (segformer: b0..b5; ResNet nets: r50-d8, r101-d16...).
  config.model.dtype = 'float32'  # Compute dtype: float32 or bfloat16 (parameters stay float32).
  config.model.drop_path_rate = 0.1  # Stochastic depth rate (rises linearly over blocks).
  config.model.dropout_rate = 0.1  # Dropout before the classifier.
  config.model.aux_head = True  # Attach the reference's auxiliary head(s), where the model has any (trained with config.loss.aux).
  config.model.multi_grid = ()  # ResNet backbones: unit rates of the last stage's blocks (DeepLabV3's multi-grid, e.g. (1, 2, 4)); () = off.
  config.model.overrides = ()  # (field, value) pairs for the model constructor, e.g. (('channels', 128),) for a head's width (see each model's constructor).
  config.model.pretrained = ''  # Whole-model weights to start training from (and to evaluate / predict with when the workdir has no checkpoint): a semseg_jax checkpoint (a workdir, its checkpoints/, one checkpoints/<step>, or `python -m semseg_jax.convert` output), a Hugging Face model directory, a .safetensors/.pth/.bin state dict, or a hub id (see semseg_jax/convert). A classifier with another class count is re-initialised, with a warning.
  config.model.backbone_pretrained = ''  # Backbone-only weights (e.g. ImageNet: 'nvidia/mit-b0', a torchvision/timm/mmcv ResNet file, a HF ResNet directory), in any form config.model.pretrained accepts; the rest of the model starts from its initialisation.
  config.model.pretrained_preprocessing = True  # Use the mean/std/channel order that the pretrained weights expect (recorded with them, or their family's convention) instead of config.data's, with a warning where they differ.

  # Data: the source, its label conventions and the input pipeline.
  config.data = ml_collections.ConfigDict()
  config.data.name = 'synthetic'  # Dataset: a key of semseg_jax.data.datasets.DATASETS, 'tfds:<name>' or 'arrayrecord:<dir>'.
  config.data.root = config_dict.placeholder(str)  # Dataset directory (file datasets only).
  config.data.example_tree = False  # Instead of root: a tiny tree in this dataset's on-disk layout, written under <workdir>/example_data (the configs' `smoke` argument).
  config.data.train_split = 'train'  # Split used for training.
  config.data.eval_split = 'val'  # Split used for evaluation.
  config.data.ignore_index = 255  # Label of pixels that count nowhere (loss, metrics).
  config.data.mean = (123.675, 116.28, 103.53)  # Per-channel RGB mean on 0..255 images.
  config.data.std = (58.395, 57.12, 57.375)  # Per-channel RGB std on 0..255 images.
  config.data.channel_order = 'rgb'  # Channel order the model sees ('rgb', or 'bgr' for Caffe-style weights); mean/std are given in that order.
  config.data.num_workers = 0  # Grain worker processes per host (0: in the main process).
  config.data.prefetch_batches = 4  # Batches the workers keep ready ahead of the model.
  config.data.synthetic_image_size = (64, 64)  # Synthetic dataset: (height, width) of images.
  config.data.synthetic_train_size = 2000  # Synthetic dataset: examples in the train split.
  config.data.synthetic_eval_size = 128  # Synthetic dataset: examples in the val split.
  config.data.variant = ''  # Dataset variant: coco_stuff '164k' | '10k'; pascal_context '59' | '60'; '' = the dataset's default.
  config.data.skip_bad_examples = False  # Skip (and count) unreadable or inconsistent examples instead of stopping.
  config.data.max_bad_fraction = 0.01  # With skip_bad_examples: abort once more than this fraction of a split's examples is bad.
  config.data.max_image_pixels = 89_478_485  # A file whose header claims more pixels is a bad file (decompression bomb guard; PIL's default); raise for larger images, None for no limit.
  config.data.check_splits = ()  # --mode=check_data: splits to check (() = train_split and eval_split).
  # Classes and label encoding of 'folder' and 'tfds:<name>' datasets (known datasets bring their own).
  config.data.class_names = ()  # Class names in label order; their number is the number of classes.
  config.data.palette = ()  # (r, g, b) per class for pictures (() = generated colours).
  config.data.label_colors = ()  # RGB-mask labels: (r, g, b) of each class, in class_names order (() = index labels).
  config.data.ignore_colors = ()  # RGB-mask labels: colours that mean "ignore" (e.g. ((0, 0, 0),)).
  config.data.reduce_zero_label = False  # Index labels: 0 -> ignore, k -> class k - 1 (ADE20K's convention).
  # The 'folder' dataset: your own images and labels under config.data.root ({split} -> split name).
  config.data.folder = ml_collections.ConfigDict()
  config.data.folder.image_dir = 'images/{split}'  # Images, relative to root.
  config.data.folder.label_dir = 'labels/{split}'  # Labels (same file name stem as the image), relative to root.
  config.data.folder.image_suffix = '.jpg'  # Image file name ending.
  config.data.folder.label_suffix = '.png'  # Label file name ending.
  config.data.folder.split_list = ''  # Optional file of stems, one per line, relative to root ('' = every image).
  # 'tfds:<name>' datasets (name may carry a version: 'tfds:my_dataset:1.0.0').
  config.data.tfds = ml_collections.ConfigDict()
  config.data.tfds.data_dir = ''  # TFDS data_dir ('' = TFDS's default).
  config.data.tfds.image_feature = 'image'  # Feature holding the RGB image.
  config.data.tfds.label_feature = 'segmentation_mask'  # Feature holding the label map.

  # Training-time augmentation (mmsegmentation's pipeline, in this order).
  config.augment = ml_collections.ConfigDict()
  config.augment.resize_scale = (2048, 512)  # RandomResize base (long, short) edge limits; () = none.
  config.augment.ratio_range = (0.5, 2.0)  # RandomResize ratio range applied to resize_scale.
  config.augment.crop_size = (512, 512)  # RandomCrop (height, width); batches are padded to it.
  config.augment.cat_max_ratio = 0.75  # RandomCrop: max share of one class in the crop (1 = off).
  config.augment.flip_prob = 0.5  # Horizontal flip probability.
  config.augment.photometric = True  # PhotoMetricDistortion (brightness, contrast, HSV).

  # Training loop.
  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 16  # Global batch size (all devices and hosts).
  config.train.num_steps = 160_000  # Optimizer steps.
  config.train.log_every = 50  # Steps between training-metric logs.
  config.train.eval_every = 16_000  # Steps between evaluations (and at the last step) of the evaluators whose every_steps is None.
  config.train.grad_accum_steps = 1  # Micro-batches per step (gradients combined; batch_size must divide by it).
  config.train.accept_inexact_accumulation = False  # Let grad_accum_steps > 1 compute batch-level loss terms (Dice/IoU/Lovasz... without per_image, OHEM over the whole batch) per micro-batch, which changes them; otherwise that is an error.
  config.train.max_bad_steps = 10  # Consecutive non-finite steps (each skipped) before training stops; checked every log_every steps.

  # Losses per model output: (name, weight, options) terms, names from semseg_jax.losses.LOSSES.
  config.loss = ml_collections.ConfigDict()
  config.loss.logits = (('cross_entropy', 1.0, {}),)  # Terms on the main logits.
  config.loss.aux = (('cross_entropy', 0.4, {}),)  # Terms on each auxiliary head's logits (models with aux heads).
  config.loss.detail = (('detail_bce', 1.0, {}), ('detail_dice', 1.0, {}))  # Terms on each detail head's boundary logits (STDC's detail branch).
  config.loss.class_weights = ()  # Per-class weights for every term (() = all equal).
  config.loss.class_weighting = ''  # Per-class weights computed from the training split's labels at start: 'median_frequency' (SegNet) | 'enet' (ENet's 1 / ln(1.02 + p)) | 'linknet' (1 / ln(1.02 + pixels / the top class's)) | 'espnet' (1 / ln(1.10 + p)) | '' (use class_weights).
  config.loss.distance_max_classes = 0  # Distance losses: classes per crop with a map (0 = all; lower it for many-class datasets).

  # Optimizer (optax); per-parameter multipliers are regexes on the '/'-joined parameter path.
  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = 'adamw'  # adamw | adam (L2 in the gradient) | sgd | rmsprop (PyTorch's).
  config.optimizer.lr = 6e-5  # Base learning rate.
  config.optimizer.b1 = 0.9  # Adam(W) beta1.
  config.optimizer.b2 = 0.999  # Adam(W) beta2.
  config.optimizer.eps = 1e-8  # Adam(W) / RMSProp epsilon.
  config.optimizer.rms_decay = 0.99  # RMSProp's decay of the mean squared gradient (PyTorch's alpha).
  config.optimizer.rms_eps_in_sqrt = False  # RMSProp: divide by sqrt(mean square + eps) (Lasagne's, TensorFlow's) instead of sqrt(mean square) + eps (PyTorch's).
  config.optimizer.momentum = 0.9  # SGD / RMSProp momentum.
  config.optimizer.nesterov = False  # SGD Nesterov momentum.
  config.optimizer.weight_decay = 0.01  # Decoupled (AdamW) or L2-gradient (Adam, SGD, RMSProp) weight decay.
  config.optimizer.no_decay_patterns = ('norm', 'dwconv')  # Params matching get no weight decay.
  config.optimizer.lr_multipliers = (('^decode_head/', 10.0),)  # (regex, lr multiplier) pairs.
  config.optimizer.grad_clip_norm = 0.0  # Clip the global gradient norm to this (0 = off).

  # Learning-rate schedule: linear warm-up, then decay to end_factor * lr at num_steps.
  config.schedule = ml_collections.ConfigDict()
  config.schedule.name = 'poly'  # poly | cosine | step | constant (after warm-up).
  config.schedule.warmup_steps = 1500  # Linear warm-up steps.
  config.schedule.warmup_init_factor = 1e-6  # Warm-up starts at this fraction of lr.
  config.schedule.power = 1.0  # Poly decay power.
  config.schedule.end_factor = 0.0  # Final lr as a fraction of lr (poly, cosine).
  config.schedule.step_size = 0  # 'step': steps between decays (PyTorch's StepLR step_size).
  config.schedule.step_gamma = 0.1  # 'step': the factor of each decay (StepLR's gamma).

  # Evaluation: how the model sees an image at test time; the settings of --mode=eval, predict
  # and benchmark, and of every evaluator (config.evals) but where the evaluator sets its own.
  config.eval = eval_settings()  # Fields and defaults: eval_settings() below.

  # Evaluators: name -> evaluator(...) below; each runs in training when due and in --mode=eval.
  config.evals = ml_collections.ConfigDict()
  config.evals.val = evaluator()  # Metrics of config.data.eval_split every config.train.eval_every steps, with config.eval's settings.

  # --mode=predict: label maps for images, with the evaluation settings above.
  config.predict = ml_collections.ConfigDict()
  config.predict.inputs = ''  # An image file, a directory of images, or a glob pattern.
  config.predict.output_dir = ''  # Where labels/, colour/ and overlay/ go ('' = <workdir>/predict).

  # Checkpoints (orbax) in <workdir>/checkpoints: train state and data-iterator state together.
  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.every_steps = 2000  # Steps between checkpoints (and at the last step).
  config.checkpoint.max_to_keep = 3  # Checkpoints kept on disk.

  # Device mesh: shape per axis (-1: all remaining devices); the batch is split over data_axes.
  config.mesh = ml_collections.ConfigDict()
  config.mesh.shape = (-1,)  # Devices per mesh axis.
  config.mesh.axes = ('data',)  # Mesh axis names.
  config.mesh.data_axes = ('data',)  # Axes the batch dimension is sharded over.
  config.mesh.partition_rules = ()  # (regex on the state path, spec): spec an axis name (FSDP: largest divisible dim) or one entry per dim; first match wins; unmatched = replicated.

  # --mode=benchmark.
  config.benchmark = ml_collections.ConfigDict()
  config.benchmark.batch_size = 8  # Global batch size for the timed steps.
  config.benchmark.warmup_steps = 3  # Untimed steps after compilation.
  config.benchmark.steps = 10  # Timed steps.
  config.benchmark.eval_image_hw = (1024, 2048)  # Evaluation step measured on one such image per device.
  config.benchmark.eval_rounds = 3  # Alternating timed passes of the evaluation step and the bare model; each reports its fastest.
  config.benchmark.data_workers = (1, 2, 4)  # --mode=data_benchmark: grain worker counts to time (after one core in process).
  config.benchmark.data_warmup_batches = 2  # --mode=data_benchmark: untimed batches per setting.
  config.benchmark.data_batches = 10  # --mode=data_benchmark: timed batches per setting.

  config.lock()
  return common.maybe_smoke(config, arg)


def eval_settings() -> ml_collections.ConfigDict:
  """config.eval: how the model sees an image at test time, and what an evaluation writes."""
  settings = ml_collections.ConfigDict()
  settings.mode = 'whole'  # How the model sees an image: whole | slide (sliding windows).
  settings.crop_size = (512, 512)  # Slide mode: window (h, w).
  settings.stride = (341, 341)  # Slide mode: window stride (h, w).
  settings.windows_per_step = 4  # Slide mode: windows of each image per model call.
  settings.resize_scale = (2048, 512)  # Keep-ratio resize (long, short) before inference; () = none.
  settings.scales = ()  # Multi-scale test ratios of resize_scale, e.g. (0.5, 0.75, 1.0, 1.25, 1.5, 1.75); () = single scale.
  settings.flip = False  # Also infer on the horizontally flipped image; probabilities averaged.
  settings.align_multiple = 0  # Resize each side up to a multiple of this (SegFormer's aligned resize: 32); 0 = off.
  settings.batch_size = 8  # Global eval batch size (padded examples count nowhere).
  settings.mc_dropout_samples = 0  # Monte-Carlo dropout test (Bayesian SegNet): dropout samples per view, mean probabilities predict; predict mode also writes uncertainty/ maps; 0 = off.
  settings.pad_multiple = 32  # Images are padded to a multiple of this (one compile per shape).
  settings.num_overlays = 4  # Prediction overlays written per evaluation.
  settings.checkpoint_step = -1  # --mode=eval and predict restore this step (-1: the latest).
  return settings


def evaluator(**changes) -> ml_collections.ConfigDict:
  """One entry of config.evals with every field given; `changes` set fields. The inference
  fields (those of config.eval) left None take config.eval's value."""
  entry = ml_collections.ConfigDict()
  entry.type = 'segmentation'  # segmentation (confusion matrix -> metrics, per-class table, overlays) | predict (label-map PNGs of every image of the split).
  entry.split = ''  # The split evaluated ('' = config.data.eval_split).
  entry.every_steps = config_dict.placeholder(int)  # In training: every N steps and at the last step; 0 = at the last step only; -1 = never (--mode=eval skips it too); None = config.train.eval_every.
  entry.output_dir = ''  # predict: where labels/, colour/ and overlay/ go ('' = <workdir>/predictions/<name>).
  for field, value in eval_settings().items():
    if field != 'checkpoint_step':
      entry[field] = config_dict.placeholder(type(value))  # None: config.eval's.
  for field, value in changes.items():
    if field not in entry:
      raise ValueError(f'evaluator(): unknown field {field!r}; expected one of {sorted(entry)}.')
    entry[field] = value
  entry.lock()
  return entry


def add_evaluator(config: ml_collections.ConfigDict, name: str, **changes) -> None:
  """Adds config.evals[name] = evaluator(**changes) to a (locked) config."""
  with config.evals.unlocked():
    config.evals[name] = evaluator(**changes)
