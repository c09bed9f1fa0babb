"""The grain input pipelines: determinism, host sharding, iterator state, evaluation plans."""

import numpy as np
import pytest

from configs import ade20k_segformer
from configs import quickstart
from semseg_jax.data import datasets
from semseg_jax.data import pipeline
from semseg_jax.data.datasets import ade20k


def _config(batch_size=4):
  config = quickstart.get_config()
  config.data.synthetic_image_size = (32, 32)
  config.data.synthetic_train_size = 10
  config.augment.crop_size = (32, 32)
  config.augment.resize_scale = (64, 32)
  config.train.batch_size = batch_size
  return config


def _take(dataset, n):
  it = iter(dataset)
  return [next(it) for _ in range(n)]


def test_train_batches_are_deterministic_and_shaped():
  config = _config()
  source = datasets.make_source(config.data, 'train', config.seed)
  first, second = _take(pipeline.train_dataset(config, source), 4), _take(
      pipeline.train_dataset(config, source), 4)
  for a, b in zip(first, second):
    assert a['image'].shape == (4, 32, 32, 3) and a['image'].dtype == np.float32
    assert a['label'].shape == (4, 32, 32) and a['label'].dtype == np.int32
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['label'], b['label'])
  # Ten examples, batches of four: the stream crosses epochs, reshuffled, never stalls.
  assert not np.array_equal(first[0]['image'], first[3]['image'])


def test_process_shards_concatenate_into_the_global_batch():
  """Process p of P takes rows [p * b, (p + 1) * b) of every global batch: the hosts' batches
  in process order are the one-host batch row for row, so data does not depend on the number
  of hosts."""
  config = _config(batch_size=4)
  source = datasets.make_source(config.data, 'train', config.seed)
  single = _take(pipeline.train_dataset(config, source), 3)
  shards = [_take(pipeline.train_dataset(config, source, p, 2), 3) for p in range(2)]
  for k in range(3):
    for row in range(4):
      host, local_row = row // 2, row % 2
      for key in ('image', 'label'):
        np.testing.assert_array_equal(single[k][key][row], shards[host][k][key][local_row])


def test_iterator_state_resumes_at_the_next_batch():
  config = _config()
  source = datasets.make_source(config.data, 'train', config.seed)
  dataset = pipeline.train_dataset(config, source)
  it = iter(dataset)
  next(it), next(it)
  state = it.get_state()
  expected = next(it)
  resumed = iter(dataset)
  resumed.set_state(state)
  np.testing.assert_array_equal(next(resumed)['image'], expected['image'])


def test_batch_size_must_divide_over_processes():
  config = _config(batch_size=5)
  source = datasets.make_source(config.data, 'train', config.seed)
  with pytest.raises(ValueError, match='config.train.batch_size'):
    pipeline.train_dataset(config, source, 0, 2)


@pytest.fixture(scope='module')
def ade_config(tmp_path_factory):
  config = ade20k_segformer.get_config('b0')
  config.data.root = ade20k.write_example_tree(str(tmp_path_factory.mktemp('ade')), config.data,
                                               num_train=2, num_val=5)
  config.data.num_workers = 0
  config.eval.resize_scale = (96, 64)
  config.eval.batch_size = 2
  return config


@pytest.mark.parametrize('scales', [(), (0.5, 1.25)])
def test_eval_plan_groups_pads_and_covers_every_example_once(ade_config, scales):
  source = datasets.make_source(ade_config.data, 'val')
  ade_config = ade_config.copy_and_resolve_references()
  ade_config.eval.scales = scales
  plan = pipeline.eval_plan(source, ade_config.eval, 2)
  assert sorted(e[0] for e in plan if e[0] >= 0) == list(range(len(source)))
  assert len(plan) % 2 == 0
  for start in range(0, len(plan), 2):  # One set of canvases per global batch.
    assert len({e[1:] for e in plan[start:start + 2]}) == 1
  for index, (lh, lw), canvases in plan:
    assert len(canvases) == max(len(scales), 1)
    assert lh % 32 == 0 and lw % 32 == 0
    assert all(ch % 32 == 0 and cw % 32 == 0 for ch, cw in canvases)
    if index >= 0:
      assert source.image_size(index) <= (lh, lw)
      for ratio, (ch, cw) in zip(pipeline.eval_scales(ade_config.eval), canvases):
        h, w = pipeline.eval_input_size(source.image_size(index), ade_config.eval.resize_scale,
                                        ratio, ade_config.eval.align_multiple)
        assert h <= ch < h + 32 and w <= cw < w + 32


@pytest.mark.parametrize('process_count', [1, 2])
def test_eval_batches_carry_labels_masks_and_sizes(ade_config, process_count):
  source = datasets.make_source(ade_config.data, 'val')
  seen, steps_per_host = [], []
  for p in range(process_count):
    config = ade_config.copy_and_resolve_references()
    config.eval.batch_size = 2 * process_count
    dataset, num_steps = pipeline.eval_dataset(config.eval, config.data, source, p,
                                               process_count)
    batches = list(dataset)
    steps_per_host.append((len(batches), num_steps))
    for batch in batches:
      for i, index in enumerate(batch['index']):
        mask = batch['mask'][i]
        if index < 0:
          assert not mask.any() and (batch['label'][i] == 255).all()
          continue
        seen.append(int(index))
        h, w = batch['label_hw'][i]
        label = source[int(index)]['label']
        assert (h, w) == label.shape and mask[:h, :w].all() and mask.sum() == h * w
        np.testing.assert_array_equal(batch['label'][i][:h, :w], label)
        assert (batch['label'][i][h:] == 255).all() and (batch['label'][i][:, w:] == 255).all()
        ih, iw = batch['image_hws'][0][i]
        assert (ih, iw) == pipeline.eval_input_size(label.shape, config.eval.resize_scale, 1.0,
                                                    config.eval.align_multiple)
        image = batch['images'][0][i]
        assert (image[ih:] == 0).all() and (image[:, iw:] == 0).all()
        assert np.abs(image[:ih, :iw]).mean() > 0.1
  assert sorted(seen) == list(range(len(source)))
  assert len({s for s in steps_per_host}) == 1  # Every host runs the same number of steps.
  assert steps_per_host[0][0] == steps_per_host[0][1]


def test_worker_processes_give_the_same_batches_and_resume():
  """grain worker processes (config.data.num_workers) change nothing but speed: 2 of them give
  the in-process batches, and their state resumes in-process."""
  config = _config()
  source = datasets.make_source(config.data, 'train', config.seed)
  expected = _take(pipeline.train_dataset(config, source), 4)
  config.data.num_workers = 2
  it = iter(pipeline.train_dataset(config, source))
  got = [next(it), next(it)]
  state = it.get_state()
  config.data.num_workers = 0
  resumed = iter(pipeline.train_dataset(config, source))
  resumed.set_state(state)
  got += [next(resumed), next(resumed)]
  for a, b in zip(expected, got):
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['label'], b['label'])


def test_skipped_examples_are_replaced_counted_and_bounded():
  from semseg_jax.data.datasets import files  # pylint: disable=g-import-not-at-top

  class Source:
    num_classes = 2

    def __len__(self):
      return 10

    def __getitem__(self, i):
      if i in (3, 4, 7):
        raise files.DataError(f'file_{i}.png: cannot be decoded')
      return {'image': np.full((2, 2, 3), i, np.uint8), 'label': np.zeros((2, 2), np.uint8),
              'index': i}

  source = pipeline.SkipBadExamples(Source())
  assert source[2]['skipped'] == 0 and source[2]['index'] == 2
  assert source[3]['skipped'] == 2 and source[3]['index'] == 5  # 3 and 4 are bad.
  assert source[7]['index'] == 8
  with pytest.raises(files.DataError, match='2 consecutive examples are bad'):
    pipeline.SkipBadExamples(Source(), max_consecutive=2)[3]
  counter = pipeline.BadExampleCounter(split_size=10, process_count=1, max_fraction=0.25,
                                       split='train')
  counter.update(np.array([0, 2]))  # 2 bad of the split's 10: 20% <= 25%.
  counter.update(np.array([0, 0, 0, 0]))
  with pytest.raises(files.DataError, match='max_bad_fraction=0.25'):
    counter.update(np.array([1, 0]))  # 3 of 10 examples so far.


def test_file_dataset_batches_are_the_same_for_any_worker_count_and_resume(tmp_path):
  """A file-backed dataset (Cityscapes layout): 0, 1 or 3 worker processes give identical
  batches, and a state saved mid-epoch under one worker count resumes under another."""
  from configs import datasets as dataset_settings  # pylint: disable=g-import-not-at-top
  config = dataset_settings.cityscapes(quickstart.get_config())
  config.data.root = datasets.write_example_tree(config.data, str(tmp_path))
  config.augment.resize_scale, config.augment.crop_size = (96, 48), (16, 32)
  config.train.batch_size = 3  # 4 images: batches straddle epochs.
  source = datasets.make_source(config.data, 'train')
  expected = _take(pipeline.train_dataset(config, source), 5)
  config.data.num_workers = 3
  for a, b in zip(expected, _take(pipeline.train_dataset(config, source), 5)):
    for key in ('image', 'label'):
      np.testing.assert_array_equal(a[key], b[key])
  config.data.num_workers = 1
  it = iter(pipeline.train_dataset(config, source))
  for k in (0, 1):
    batch = next(it)
    for key in ('image', 'label'):
      np.testing.assert_array_equal(batch[key], expected[k][key])
  state = it.get_state()
  config.data.num_workers = 0
  resumed = iter(pipeline.train_dataset(config, source))
  resumed.set_state(state)
  for k in (2, 3, 4):
    batch = next(resumed)
    for key in ('image', 'label'):
      np.testing.assert_array_equal(batch[key], expected[k][key])
