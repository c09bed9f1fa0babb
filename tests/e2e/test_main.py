"""End to end through the entry point users run, `semseg_jax.main`: in-process (`main.run`, what
`python -m semseg_jax.main` calls after parsing its flags) where a separate process is not what
is tested, as a subprocess for the flags, signals and device counts."""

import json
import logging
import os
import pathlib
import shlex
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from PIL import Image

from configs import ade20k_segformer
from configs import camvid_enet
from configs import default
from semseg_jax import huge_pages
from semseg_jax import logs
from semseg_jax import main
from semseg_jax import preemption
from semseg_jax import train_state
from semseg_jax.data import datasets
from semseg_jax.evaluators import segmentation
from tests.helpers import bad_files
from tests.helpers import e2e_config
from tests.helpers import mesh_restore
from tests.helpers import run_main
from tests.helpers import sharded_steps
from tests.helpers import tensorboard_events

REPO = run_main.REPO


def _tiny(num_steps: int, **overrides):
  return e2e_config.apply(e2e_config.tiny_quickstart(),
                          {'train.num_steps': num_steps, **overrides})


def _flags(num_steps, **extra):
  overrides = {**e2e_config.TINY, 'train.num_steps': num_steps, **extra}
  return e2e_config.override_flags(overrides)


def _write_images(folder, source):
  """Two synthetic validation images as PNG, and two other-size pictures (JPEG, greyscale)."""
  folder.mkdir()
  for i in range(2):
    Image.fromarray(source[i]['image']).save(folder / f'{source.name(i)}.png')
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 256, (45, 70, 3), np.uint8)).save(folder / 'wide.jpg')
  Image.fromarray(rng.integers(0, 256, (50, 21), np.uint8)).save(folder / 'grey.png')
  (folder / 'notes.txt').write_text('not an image')


def _same(a, b) -> bool:
  """Equal, NaN included (a class absent from ground truth and prediction has NaN metrics)."""
  return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _count_fresh_states(monkeypatch) -> list:
  """A list that gains an entry each time a newly initialised train state is made (resuming
  and eval restore onto the state's shapes instead)."""
  made = []
  fresh_state = train_state._fresh_state  # pylint: disable=protected-access
  monkeypatch.setattr(train_state, '_fresh_state',
                      lambda *args: made.append(1) or fresh_state(*args))
  return made


SLIDE_FLIP = {'eval.mode': 'slide', 'eval.crop_size': (24, 24), 'eval.stride': (16, 16),
              'eval.flip': True, 'eval.scales': (0.75, 1.0), 'eval.num_overlays': 2}


@pytest.mark.slow(60)
def test_train_with_two_evaluators_then_eval_and_predict_modes(tmp_path, monkeypatch):
  """Training runs each evaluator when due (whole-image val every 2 steps, slide + flip +
  two scales at the end) and leaves metrics, checkpoints, overlays, confusion matrices and
  TensorBoard logs; --mode=eval reproduces the final evaluations without reading the training
  split; --mode=predict on a folder writes label PNGs at each input's size that match the
  evaluation's predictions for the same images, with the same settings; then from pretrained
  weights in an empty workdir."""
  workdir = tmp_path / 'run'

  def config():
    c = _tiny(4, **{'train.eval_every': 2, 'checkpoint.every_steps': 2})
    default.add_evaluator(c, 'val_slide_flip', every_steps=0, mode='slide', crop_size=(24, 24),
                          stride=(16, 16), flip=True, scales=(0.75, 1.0))
    return c

  results = main.run('train', config(), str(workdir))
  records = run_main.records(workdir)
  assert [(r['step'], r['evaluator']) for r in records] == [
      (2, 'val'), (4, 'val'), (4, 'val_slide_flip')]
  assert results['val']['mIoU'] == records[1]['mIoU']
  for record in records:
    assert record['split'] == 'val'
    for key in ('aAcc', 'mAcc', 'mIoU', 'FWIoU', 'mDice'):
      assert 0 <= record[key] <= 100
  assert set(records[-1]['IoU']) == set(datasets.synthetic.CLASS_NAMES)
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['2', '4']
  for name in ('val', 'val_slide_flip'):
    assert len(os.listdir(workdir / 'overlays' / name / 'step_0000004')) == 2
    assert np.load(workdir / f'confusion_{name}_step_0000004.npy').shape == (6, 6)
    assert os.path.getsize(workdir / f'confusion_{name}_step_0000004.png') > 1000
  # TensorBoard (written without TensorFlow) shows the losses, each evaluation's metrics and
  # overlays, and the config that ran as hparams.
  events = tensorboard_events.read(workdir)
  assert [e.step for e in events.Scalars('val/mIoU')] == [2, 4]
  assert [e.value for e in events.Scalars('val/mIoU')] == pytest.approx(
      [r['mIoU'] for r in records[:2]])
  assert events.Scalars('val_slide_flip/mIoU')[0].value == pytest.approx(records[2]['mIoU'])
  assert {'train/loss', 'train/learning_rate', 'val/aAcc'} <= set(events.Tags()['scalars'])
  for name in ('val', 'val_slide_flip'):
    for file in os.listdir(workdir / 'overlays' / name / 'step_0000004'):
      overlay = events.Images(f'{name}/overlay/{pathlib.Path(file).stem}')[-1]
      assert (overlay.step, overlay.height, overlay.width) == (4, 32, 96)
  hparams = tensorboard_events.hparams(events)
  assert hparams['num_params'] > 0 and hparams['train.num_steps'] == 4
  assert hparams['model.name'] == config().model.name

  # --mode=eval runs both evaluators on the latest checkpoint, reading no training data (and
  # initialising no weights: the checkpoint restores onto the state's shapes).
  fresh_states = _count_fresh_states(monkeypatch)
  read_splits = []
  make_source = datasets.make_source
  monkeypatch.setattr(datasets, 'make_source',
                      lambda data, split, seed=0: read_splits.append(split) or make_source(
                          data, split, seed))
  again = main.run('eval', config(), str(workdir))
  assert _same(again, results)
  assert _same(run_main.records(workdir)[-2:], records[-2:])
  assert 'train' not in read_splits

  # The same slide + flip + two scales for every evaluation setting: eval, then predict.
  main.run('eval', e2e_config.apply(config(), SLIDE_FLIP), str(workdir))
  source = datasets.make_source(e2e_config.tiny_quickstart().data, 'val')
  inputs = tmp_path / 'images'
  _write_images(inputs, source)
  out = tmp_path / 'out'
  predict_overrides = {**SLIDE_FLIP, 'predict.inputs': str(inputs), 'predict.output_dir': str(out)}
  main.run('predict', e2e_config.apply(config(), predict_overrides), str(workdir))
  assert 'train' not in read_splits
  names = ['grey', source.name(0), source.name(1), 'wide']
  for kind in ('labels', 'colour', 'overlay'):
    assert sorted(p.stem for p in (out / kind).iterdir()) == names
  sizes = {'grey': (50, 21), 'wide': (45, 70), source.name(0): (32, 32),
           source.name(1): (32, 32)}
  for name, hw in sizes.items():
    label = np.asarray(Image.open(out / 'labels' / f'{name}.png'))
    assert label.shape == hw and label.dtype == np.uint8 and label.max() < 6
    colour = np.asarray(Image.open(out / 'colour' / f'{name}.png'))
    np.testing.assert_array_equal(colour, source.palette[label])
    assert np.asarray(Image.open(out / 'overlay' / f'{name}.png')).shape == (*hw, 3)
  for i in range(2):  # The eval overlay's third panel is the prediction in the palette.
    panel = np.asarray(Image.open(workdir / 'overlays' / 'val' / 'step_0000004' /
                                  f'{source.name(i)}.png'))
    predicted = np.asarray(Image.open(out / 'colour' / f'{source.name(i)}.png'))
    np.testing.assert_array_equal(panel[:, 64:], predicted)

  assert not fresh_states
  # An empty workdir predicts with config.model.pretrained: the same weights, the same labels.
  other = tmp_path / 'out_pretrained'
  main.run('predict', e2e_config.apply(config(), {
      **predict_overrides, 'predict.output_dir': str(other), 'model.pretrained': str(workdir)}),
           str(tmp_path / 'empty'))
  for name in sizes:
    np.testing.assert_array_equal(np.asarray(Image.open(other / 'labels' / f'{name}.png')),
                                  np.asarray(Image.open(out / 'labels' / f'{name}.png')))


@pytest.mark.parametrize('inputs,expected', [('missing/*.png', 'matches no image'),
                                             ('', 'config.predict.inputs')])
def test_predict_mode_names_bad_inputs(tmp_path, inputs, expected):
  config = _tiny(1, **{'predict.inputs': inputs})
  with pytest.raises((ValueError, FileNotFoundError), match=expected):
    main.run('predict', config, str(tmp_path))


@pytest.mark.slow(20)
def test_predict_names_a_corrupt_image_or_skips_it_when_asked(tmp_path, caplog):
  """A corrupt image among the inputs stops --mode=predict naming it; with
  config.data.skip_bad_examples every good image is written, the bad ones (a decompression bomb
  too) are named in the log and counted in metrics.jsonl."""
  workdir = tmp_path / 'run'
  train = {'train.eval_every': 1000, 'checkpoint.every_steps': 2}
  main.run('train', _tiny(4, **train), str(workdir))
  inputs = tmp_path / 'images'
  _write_images(inputs, datasets.make_source(e2e_config.tiny_quickstart().data, 'val'))
  broken = inputs / 'broken.png'
  broken.write_bytes((inputs / 'grey.png').read_bytes()[:60])  # A header, then nothing.
  out = tmp_path / 'out'
  # The evaluation settings of test_train_with_two_evaluators_then_eval_and_predict_modes's
  # predictions of the same images: its programs, from the compilation cache.
  predict = {**train, **SLIDE_FLIP, 'predict.inputs': str(inputs),
             'predict.output_dir': str(out)}
  with pytest.raises(Exception, match=str(broken)):
    main.run('predict', _tiny(4, **predict), str(workdir))
  bomb = inputs / 'zz_bomb.png'  # Claims 30000 x 30000 pixels: skipped like any bad file.
  bad_files.write_decompression_bomb(bomb)
  caplog.set_level(logging.INFO)
  main.run('predict', _tiny(4, **predict, **{'data.skip_bad_examples': True,
                                              'data.max_bad_fraction': 0.5}), str(workdir))
  assert sorted(p.stem for p in (out / 'labels').iterdir()) == sorted(
      p.stem for p in inputs.iterdir() if p.suffix in ('.png', '.jpg') and p not in (broken, bomb))
  assert str(broken) in caplog.text and f'{bomb}: its header claims' in caplog.text
  record = run_main.records(workdir)[-1]
  assert record['evaluator'] == 'predict' and record['skipped_examples'] == 2
  assert record['images'] == 4


def _start_and_wait_for_checkpoint(workdir, flags, step, log):
  """Starts a run logging to `log` and returns it once the checkpoint of `step` exists."""
  proc = run_main.start_logged(run_main.main_command(workdir, *flags), run_main.env(), log)
  deadline = time.time() + 600
  while not (workdir / 'checkpoints' / str(step)).exists():
    assert proc.poll() is None, f'the run ended before it could be interrupted:\n' \
        f'{log.read_text()[-3000:]}'
    if time.time() > deadline:
      proc.kill()
      raise AssertionError(f'no checkpoint of step {step} in 600 s:\n{log.read_text()[-3000:]}')
    time.sleep(0.02)
  return proc


def _stat(pid: int) -> list[str] | None:
  """The fields of /proc/<pid>/stat after the command name (state, parent pid, ...), or None
  once the process is gone."""
  try:
    return pathlib.Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
  except OSError:
    return None


def _children(pid: int) -> list[int]:
  """The processes whose parent is `pid` (Linux /proc)."""
  return [int(entry) for entry in os.listdir('/proc') if entry.isdigit()
          and (fields := _stat(int(entry))) is not None and int(fields[1]) == pid]


def _alive(pid: int) -> bool:
  """Running (not exited, not a zombie waiting to be reaped)."""
  fields = _stat(pid)
  return fields is not None and fields[0] != 'Z'


def _steps(workdir):
  return sorted(int(s) for s in os.listdir(workdir / 'checkpoints') if s.isdigit())


@pytest.mark.slow(75)
def test_sigterm_then_sigkill_then_rerun_equals_an_uninterrupted_run(tmp_path):
  """SIGTERM (preemption) saves at the next step boundary and exits 0; SIGKILL loses only what
  came after the last checkpoint, and the killed run's grain worker process exits by itself;
  the same run resumes (in this process: its start is not what is tested); the end is
  bit-exact. A second run on the workdir of a live one fails at once; a killed run leaves no
  lock behind."""
  overrides = {'train.eval_every': 20, 'checkpoint.every_steps': 5}
  flags = _flags(40, **overrides)
  straight = tmp_path / 'straight'  # In this process: the reference, saved only at its end.
  main.run('train', _tiny(40, **{**overrides, 'checkpoint.every_steps': 40}), str(straight))

  killed = tmp_path / 'killed'
  log = tmp_path / 'preempted.log'
  proc = _start_and_wait_for_checkpoint(killed, flags, 5, log)
  with pytest.raises(RuntimeError, match=f'Another run is training in {killed} '
                                         rf'\(process {proc.pid} holds'):
    main.run('train', _tiny(40, **overrides), str(killed))
  proc.send_signal(signal.SIGTERM)
  proc.wait(timeout=120)
  stderr = log.read_text()
  assert proc.returncode == 0, stderr[-3000:]
  assert 'Preemption: saved the checkpoint of step' in stderr
  preempted_at = _steps(killed)[-1]
  assert 5 <= preempted_at < 40
  assert f'checkpoint of step {preempted_at} and stopped' in stderr

  # Killed with a grain worker process: it exits by itself; the rerun (no workers) resumes
  # the same batches.
  proc = _start_and_wait_for_checkpoint(killed, flags + ['--config.data.num_workers=1'],
                                        (preempted_at // 5 + 2) * 5, tmp_path / 'killed.log')
  children = _children(proc.pid)
  assert len(children) >= 2, children  # The worker and multiprocessing's resource tracker.
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  deadline = time.time() + 30
  while any(_alive(pid) for pid in children) and time.time() < deadline:
    time.sleep(0.1)
  assert not [pid for pid in children if _alive(pid)], 'processes outlived the killed run'
  assert _steps(killed)[-1] < 40, _steps(killed)  # Killed mid-training.
  main.run('train', _tiny(40, **overrides), str(killed))  # The same run resumes (in-process).

  step_a, state_a = run_main.final_params(straight)
  step_b, state_b = run_main.final_params(killed)
  assert step_a == step_b == 40
  leaves_a, leaves_b = (e2e_config.flat_leaves(s) for s in (state_a, state_b))
  assert leaves_a.keys() == leaves_b.keys()
  for key in leaves_a:
    np.testing.assert_array_equal(leaves_a[key], leaves_b[key], err_msg=key)
  final_a, final_b = run_main.records(straight)[-1], run_main.records(killed)[-1]
  assert final_a == final_b


@pytest.mark.slow(120)
def test_eight_devices_match_one_and_checkpoints_move_between_meshes(tmp_path):
  """Train steps on 8 devices (one subprocess), data parallel or data x fsdp = 4 x 2 with every
  state leaf split over fsdp, give this 1-device process's losses and parameters to float
  tolerance, BatchNorm statistics included (the tiny U-Net's BatchNorm normalises over the
  global batch, so its statistics would differ if taken per device); evaluating the same
  parameters gives the same confusion matrix, but for pixels whose class is a rounding tie; the
  FSDP run's checkpoint restores exactly onto this process's one device and trains on."""
  one, eight, fsdp = tmp_path / '1.npz', tmp_path / '8.npz', tmp_path / 'f.npz'
  restored_path, workdir = tmp_path / 'r.npz', tmp_path / 'fsdp_run'
  with jax.default_prng_impl('threefry2x32'):  # The generator of the 8 (run_main.env).
    sharded_steps.run(str(one))
  jobs = [{'out_path': str(eight), 'reference_path': str(one)},
          {'out_path': str(fsdp), 'parallelism': 'fsdp', 'checkpoint_workdir': str(workdir)}]
  (tmp_path / 'jobs.json').write_text(json.dumps(jobs))
  subprocess.run([sys.executable, '-m', 'tests.helpers.sharded_steps', str(tmp_path / 'jobs.json')],
                 cwd=REPO, env=run_main.env(8), check=True, timeout=900, capture_output=True)
  with jax.default_prng_impl('threefry2x32'):
    mesh_restore.run(str(workdir), str(restored_path))
  one, eight = dict(np.load(one)), dict(np.load(eight))
  fsdp, restored = dict(np.load(fsdp)), dict(np.load(restored_path))
  # The 4 x 2 FSDP checkpoint restores exactly onto 1 device (replicated) and trains on.
  assert int(restored['num_devices']) == 1 and int(restored['step']) == 5
  # Its arrays, replicated over 4 devices and small, were saved without slicing them per
  # device (each slice shape would be a program compiled at the first save).
  assert int(fsdp['compiles_during_save']) == 0
  assert np.isfinite(restored['loss'])
  for key in [k for k in fsdp if k.startswith("['params']") or k.startswith("['batch_stats']")]:
    np.testing.assert_array_equal(restored[key], fsdp[key], err_msg=key)
  assert int(one['num_devices']) == 1 and int(eight['num_devices']) == 8
  assert int(eight['num_sharded_leaves']) == 0
  assert int(fsdp['num_sharded_leaves']) == int(fsdp['num_splittable_leaves']) > 50
  # A parameter whose true gradient is zero (e.g. a bias followed by BatchNorm) gets steps from
  # Adam's view of its rounding noise, whose sign differs with the reduction order. 5e-5 still
  # catches any real difference, which would be of lr's 1e-3 scale.
  param_keys = [k for k in one if k.startswith("['params']")]
  stats_keys = [k for k in one if k.startswith("['batch_stats']")]
  assert param_keys and stats_keys
  for other in (eight, fsdp):
    np.testing.assert_allclose(other['losses'], one['losses'], rtol=1e-5)
    for key in param_keys + stats_keys:
      np.testing.assert_allclose(other[key], one[key], rtol=1e-4, atol=5e-5, err_msg=key)
  # Every labelled pixel of the eval set is counted once: nothing lost across devices.
  config = e2e_config.tiny_quickstart()
  source = datasets.make_source(config.data, 'val')
  labelled = sum(int((source[i]['label'] != 255).sum()) for i in range(len(source)))
  assert one['confusion'].sum() == eight['reference_confusion'].sum() == labelled
  # Each class's labelled pixels exactly (the rows); the predictions to rounding: a batch of 1
  # per device compiles to other float rounding than 8 on one, so a pixel whose two best logits
  # tie within it may change class (jax 0.12: 1 pixel of ~25,000). A shard lost or counted
  # twice would move thousands.
  np.testing.assert_array_equal(eight['reference_confusion'].sum(1), one['confusion'].sum(1))
  assert np.abs(eight['reference_confusion'] - one['confusion']).sum() <= 4


@pytest.mark.slow(15)
def test_ade20k_segformer_smoke_run_reduces_its_labels_once(tmp_path):
  """configs/ade20k_segformer.py:b0,smoke trains and evaluates on a tree written in
  ADEChallengeData2016's layout; the confusion matrix's ground-truth counts are those of the
  raw PNGs reduced once (raw 0 -> ignored, raw k -> class k - 1). The network is the e2e
  tests' tiny U-Net: the labels are the dataset's, whatever network trains (SegFormer's own
  train step is the zoo test's; a narrow SegFormer-B0 here took 24 of the test's 40 s)."""
  workdir = tmp_path / 'run'
  config = e2e_config.apply(ade20k_segformer.get_config('b0,smoke'), e2e_config.UNET)
  # Every validation image of the tree padded to one size: one evaluation program, not three
  # (the padding changes predictions, not the ground-truth counts checked here).
  config.eval.pad_multiple = 128
  main.run('train', config, str(workdir))
  record = run_main.records(workdir)[-1]
  assert record['step'] == 4 and len(record['IoU']) == 150
  expected = np.zeros(150, np.int64)
  for png in sorted((workdir / 'example_data').rglob('annotations/validation/*.png')):
    raw = np.asarray(Image.open(png))
    expected += np.bincount(raw[raw > 0].ravel() - 1, minlength=150)
  assert expected.sum() > 0
  confusion = np.load(workdir / 'confusion_val_step_0000004.npy')
  np.testing.assert_array_equal(confusion.sum(axis=1), expected)


@pytest.mark.slow(45)
def test_a_smoke_run_logs_the_config_that_ran(tmp_path, caplog):
  """configs/camvid_enet.py:smoke (CamVid's layout, ENet class weights from the training
  labels): the class weights are computed before the config is logged, so the logged config
  (and the TensorBoard hparams, written from the same config) holds the weights that trained.
  The model is the e2e tests' tiny U-Net: the weights and the log are the config's, whatever
  network trains (ENet's own train step is the zoo test's; ENet compiled here took 12 of the
  test's 21 s)."""
  caplog.set_level(logging.INFO)
  config = e2e_config.apply(camvid_enet.get_config('smoke'), e2e_config.UNET)
  main.run('train', config, str(tmp_path))
  weights = tuple(config.loss.class_weights)
  assert len(weights) == 11 and all(w > 0 for w in weights)
  assert 'Class weights (enet) from' in caplog.text
  assert str(config) in caplog.text  # The config as it ran, class weights included.
  assert logs.flatten_config(config)['loss.class_weights'] == str(weights)
  assert (tmp_path / 'checkpoints' / '4').is_dir()


def test_a_missing_config_file_is_named_on_the_last_line(tmp_path):
  result = run_main.run(tmp_path, config='configs/ade20k_segformr.py:b0', check=False,
                        timeout=120)
  assert result.returncode != 0
  assert "no config file 'configs/ade20k_segformr.py'" in result.stderr.strip().splitlines()[-1]


def test_an_unknown_config_field_fails_at_start_naming_it(tmp_path):
  """(The config given by name, as an installed package's user may: the field is reached.)"""
  result = run_main.run(tmp_path, '--config.train.batch_sizee=3',
                        config='ade20k_segformer:b0', check=False, timeout=120)
  assert result.returncode != 0 and 'batch_sizee' in result.stderr
  assert 'no config file' not in result.stderr
  assert not (tmp_path / 'checkpoints').exists()


@pytest.mark.parametrize('root,expected', [('/no/such/dir', '/no/such/dir'),
                                           (None, 'config.data.root')])
def test_a_bad_data_root_is_named_before_any_work(tmp_path, root, expected):
  config = ade20k_segformer.get_config('b0')
  config.data.root = root
  with pytest.raises(ValueError, match=expected):
    main.run('train', config, str(tmp_path))
  assert not (tmp_path / 'checkpoints').exists()


@pytest.mark.parametrize('field,value,expected', [
    ('data.synthetic_train_size', 0, r'config\.data\.synthetic_train_size=0; expected a number'),
    ('data.synthetic_eval_size', 0, r'config\.data\.synthetic_eval_size=0; expected a number'),
    ('augment.crop_size', (64,), r'config\.augment\.crop_size=\(64,\); expected \(height, '),
    ('augment.crop_size', (64, 0), r'config\.augment\.crop_size=\(64, 0\); expected')])
def test_an_empty_split_or_a_bad_crop_is_named_before_any_work(tmp_path, field, value,
                                                               expected):
  """An empty synthetic split used to end in a bare StopIteration; a one-number crop in an
  unpacking error inside the model. (The evaluation split is read once the evaluators are
  built, before the first step.)"""
  config = _tiny(4, **{field: value})
  with pytest.raises(ValueError, match=expected):
    main.run('train', config, str(tmp_path))
  assert not list(tmp_path.glob('checkpoints/*'))


@pytest.mark.parametrize('field,value', [
    ('train.eval_every', 0), ('train.log_every', 0), ('checkpoint.every_steps', 0),
    ('train.num_steps', -1), ('checkpoint.max_to_keep', 0)])
def test_a_zero_period_or_negative_count_is_named_before_any_work(tmp_path, field, value):
  """Each used to fail mid-run (division by zero), do nothing and exit 0 (negative steps), or
  keep no checkpoint at all (max_to_keep=0)."""
  config = _tiny(4, **{field: value})
  with pytest.raises(ValueError, match=rf'config\.{field}={value}; expected an integer >= '):
    main.run('train', config, str(tmp_path))
  assert not (tmp_path / 'checkpoints').exists()


@pytest.mark.parametrize('value,expected', [
    (3, r"config\.data \(name 'synthetic'\): ignore_index=3 must lie in \[6, 255\]"),
    (300, r'ignore_index=300 must lie in \[6, 255\]: labels are uint8'),
    (-1, r'ignore_index=-1 must lie in \[6, 255\]')])
def test_an_ignore_index_that_is_a_class_or_not_8_bit_is_named_before_any_work(tmp_path, value,
                                                                              expected):
  """A class index used to train without that class yet report it (IoU 0) in mIoU; 300 used
  to overflow a uint8 label map with no field named."""
  config = _tiny(4, **{'data.ignore_index': value})
  with pytest.raises(ValueError, match=expected):
    main.run('train', config, str(tmp_path))
  assert not (tmp_path / 'checkpoints').exists()


@pytest.mark.slow(25)
def test_a_batch_that_does_not_split_over_the_devices_is_named_before_any_work(tmp_path):
  """On 2 devices, an odd training batch or an odd evaluation batch (which used to fail only
  at the first evaluation, after training, with no field named) fails at start."""
  for overrides, field in (({'train.batch_size': 3}, 'config.train.batch_size=3'),
                           ({'eval.batch_size': 3}, 'config.eval.batch_size=3')):
    result = run_main.run(tmp_path / 'run', *_flags(4, **overrides), check=False, timeout=300,
                          num_devices=2)
    assert result.returncode != 0
    assert f'{field} does not split over the 2 data-parallel devices' in result.stderr, \
        result.stderr[-3000:]
  assert not (tmp_path / 'run' / 'checkpoints').exists()
  # The command started again with huge pages for XLA's buffers where that helps.
  restarted = huge_pages.environment_with_huge_pages(
      run_main.env(2), huge_pages.glibc_version(), huge_pages.thp_mode())
  if restarted is not None:
    assert f"GLIBC_TUNABLES={restarted['GLIBC_TUNABLES']} (huge_pages.py)" in result.stderr


@pytest.mark.slow(40)
def test_a_rerun_completes_the_evaluation_its_checkpoint_still_owes(tmp_path, monkeypatch):
  """The final evaluation is never lost. Its checkpoint is saved first, so a run whose final
  evaluation crashed (a bad validation file, then fixed), a run preempted during its last step
  (saved, stopped before evaluating) and a run killed between the checkpoint and the end of the
  evaluation's record (a metrics.jsonl line cut short) each used to rerun into "Checkpoint is
  already at step 4" with no evaluation. The rerun of the same config completes it, once,
  restoring the checkpoint without initialising the weights it overwrites."""
  def config():
    return _tiny(4, **{'train.eval_every': 1000, 'checkpoint.every_steps': 4})

  def evaluations(workdir):
    return [(r['step'], r['evaluator']) for r in run_main.records(workdir)]

  fresh_states = _count_fresh_states(monkeypatch)
  straight = tmp_path / 'straight'
  main.run('train', config(), str(straight))
  want = run_main.records(straight)
  assert evaluations(straight) == [(4, 'val')]
  killed = tmp_path / 'killed'  # The same run, killed while writing its evaluation's record.
  shutil.copytree(straight, killed)
  line = (killed / 'metrics.jsonl').read_text()
  (killed / 'metrics.jsonl').write_text(line[:len(line) // 2])

  crashed = tmp_path / 'crashed'
  with monkeypatch.context() as patch:
    patch.setattr(segmentation.SegmentationEvaluator, 'run',
                  lambda *_: (_ for _ in ()).throw(OSError('a bad validation file')))
    with pytest.raises(OSError, match='a bad validation file'):
      main.run('train', config(), str(crashed))
  assert _steps(crashed)[-1] == 4 and not (crashed / 'metrics.jsonl').exists()

  preempted = tmp_path / 'preempted'
  with monkeypatch.context() as patch:  # SIGTERM arrives during step 4.
    patch.setattr(preemption.Preemption, 'requested', lambda self, step: step == 4)
    main.run('train', config(), str(preempted))
  assert _steps(preempted)[-1] == 4 and not (preempted / 'metrics.jsonl').exists()

  assert len(fresh_states) == 3  # straight, crashed and preempted started from scratch.
  for workdir in (crashed, preempted, killed):
    main.run('train', config(), str(workdir))
    assert run_main.records(workdir)[-1] == want[-1], workdir
    assert (workdir / 'confusion_val_step_0000004.npy').exists()
  main.run('train', config(), str(straight))  # Nothing owed: nothing runs again.
  assert evaluations(straight) == [(4, 'val')]
  assert len(fresh_states) == 3  # Each rerun restored onto the state's shapes: no init ran.


@pytest.mark.slow(45)
def test_a_damaged_latest_checkpoint_is_named_and_the_newest_intact_one_is_used(
    tmp_path, monkeypatch, caplog):
  """A truncated _METADATA or an emptied step directory used to stop resume and eval with raw
  library errors naming no checkpoint. Now eval names it and evaluates the newest intact step,
  saying which; training names it, moves it to checkpoints/unreadable/, resumes from that step
  and ends bit-exactly where an uninterrupted run ends. Training also removes a killed write's
  temporary directory (eval, perhaps beside a live run, touches neither)."""
  def config():  # The other tests' 4 steps: the same compiled programs.
    return _tiny(4, **{'train.eval_every': 1000, 'checkpoint.every_steps': 2})

  preempted = tmp_path / 'preempted'
  with monkeypatch.context() as patch:  # Preempted in its last step: checkpoints 2 and 4.
    patch.setattr(preemption.Preemption, 'requested', lambda self, step: step == 4)
    main.run('train', config(), str(preempted))
  assert _steps(preempted) == [2, 4]
  # Its step 4, saved when the preemption came, ends 4 uninterrupted steps: the reference
  # (its workdir is copied, never damaged).
  step_a, state_a = run_main.final_params(preempted)
  assert step_a == 4
  leaves_a = e2e_config.flat_leaves(state_a)
  for damage in ('truncated', 'emptied'):
    workdir = tmp_path / damage  # A copy of the preempted run's workdir, damaged.
    shutil.copytree(preempted, workdir)
    latest = workdir / 'checkpoints' / '4'
    if damage == 'truncated':
      metadata = latest / 'state' / '_METADATA'
      metadata.write_bytes(metadata.read_bytes()[:20])
    else:
      shutil.rmtree(latest)
      latest.mkdir()
    leftover = workdir / 'checkpoints' / '6.orbax-checkpoint-tmp-1700000000'
    (leftover / 'state').mkdir(parents=True)

    caplog.clear()
    caplog.set_level(logging.INFO)
    main.run('eval', config(), str(workdir))
    assert f'Checkpoint {latest} cannot be read' in caplog.text, damage
    assert 'Evaluating the weights of step 2.' in caplog.text
    assert leftover.exists() and latest.exists()  # Eval (maybe beside a live run) moves nothing.

    caplog.clear()
    main.run('train', config(), str(workdir))
    assert f'Checkpoint {latest} cannot be read' in caplog.text
    assert not leftover.exists()
    # Resumed from step 2: step 4 trained and saved again, and evaluated.
    assert (workdir / 'checkpoints' / 'unreadable' / '4').is_dir() and _steps(workdir) == [2, 4]
    assert run_main.records(workdir)[-1]['step'] == 4
    step_b, state_b = run_main.final_params(workdir)
    assert step_b == 4
    leaves_b = e2e_config.flat_leaves(state_b)
    assert leaves_a.keys() == leaves_b.keys()
    for key in leaves_a:
      np.testing.assert_array_equal(leaves_a[key], leaves_b[key], err_msg=key)


@pytest.mark.slow(20)
def test_benchmark_mode_measures_the_figures(tmp_path):
  config = _tiny(4, **{  # The other runs' 4 steps: the same train step program.
      'benchmark.batch_size': 8, 'benchmark.steps': 2, 'benchmark.warmup_steps': 1,
      'benchmark.eval_image_hw': (40, 72), 'eval.mode': 'slide', 'eval.crop_size': (32, 32),
      'eval.stride': (24, 24)})
  main.run('benchmark', config, str(tmp_path))
  figures = json.loads((tmp_path / 'benchmark.json').read_text())
  for key in ('params_M', 'inference_GFLOPs_per_image', 'train_compile_s',
              'train_images_per_s', 'inference_images_per_s', 'eval_peak_GiB_per_device',
              'eval_s_per_image', 'eval_model_s_per_image'):
    assert key in figures
  assert figures['eval_overhead_percent'] == pytest.approx(
      100 * (figures['eval_s_per_image'] / figures['eval_model_s_per_image'] - 1))
  assert figures['inference_GFLOPs_per_image'] > 0 and figures['train_images_per_s'] > 0
  assert figures['eval_image'] == '1x40x72' and figures['eval_peak_GiB_per_device'] > 0
  assert figures['eval_mode'].startswith('slide 1 view(s) window (32, 32) stride (24, 24)')


def test_main_drops_library_info_logs_and_keeps_their_warnings():
  """orbax logs ~30 INFO lines per checkpoint; the entry points keep our INFO and every warning."""
  quiet = logs.QuietLibraries()

  def shown(path, level):
    return quiet.filter(logging.LogRecord('absl', level, path, 1, 'message', None, None))

  orbax = '/site-packages/orbax/checkpoint/_src/path/atomicity.py'
  grain = '/site-packages/grain/_src/python/data_loader.py'
  ours = '/work/semseg_jax/train.py'
  assert not shown(orbax, logging.INFO) and not shown(grain, logging.INFO)
  assert shown(orbax, logging.WARNING) and shown(grain, logging.ERROR)
  assert shown(ours, logging.INFO)


@pytest.mark.slow(30)
def test_a_full_device_stops_training_with_one_error_and_the_last_checkpoint_intact(tmp_path):
  """The workdir is a 4 MB tmpfs (in a user and mount namespace of its own): the checkpoint of
  step 5 (2.3 MB: the tiny U-Net 44 channels wide) fits, the one of step 10 does not. The run
  ends with one line naming the directory, the full device and the intact step, no traceback;
  step 5 restores."""
  if shutil.which('unshare') is None:
    pytest.skip('needs util-linux unshare to mount a small tmpfs')
  workdir, copy = tmp_path / 'run', tmp_path / 'copy'
  workdir.mkdir()
  copy.mkdir()
  command = ' '.join(shlex.quote(part) for part in run_main.main_command(
      workdir, *_flags(20, **{'checkpoint.every_steps': 5, 'train.eval_every': 1000,
                              'model.overrides': (('base_width', 44), ('depth', 2))})))
  script = (f'mount -t tmpfs -o size=4m tmpfs {workdir} || exit 99; {command}; code=$?; '
            f'cp -a {workdir}/. {copy}/; exit $code')
  result = subprocess.run(['unshare', '--user', '--map-root-user', '--mount', 'sh', '-c', script],
                          cwd=REPO, env=run_main.env(), capture_output=True, text=True,
                          timeout=600)
  if result.returncode == 99 or 'unshare failed' in result.stderr:
    pytest.skip(f'cannot mount a tmpfs in a user namespace here: {result.stderr[-300:]}')
  assert result.returncode == 1, result.stderr[-3000:]
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith(f'semseg_jax: [Errno 28] No space left on the device of {workdir}'
                         f'/checkpoints:'), result.stderr[-3000:]
  assert 'needed for the checkpoint of step 10' in last
  assert f'The checkpoint of step 5 in {workdir}/checkpoints is intact' in last
  assert 'Traceback' not in result.stderr, result.stderr[-3000:]
  assert _steps(copy) == [5]
  step, state = run_main.final_params(copy)
  assert step == 5 and int(state['step']) == 5
