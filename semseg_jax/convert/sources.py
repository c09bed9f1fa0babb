"""Reading pretrained weights: where a source string points, and its tensors as NumPy arrays.

A source is one of
- a semseg_jax orbax checkpoint (a workdir, its checkpoints/, one checkpoints/<step>, or the
  output of `python -m semseg_jax.convert`);
- a Hugging Face model directory (config.json + model.safetensors, pytorch_model.bin, or their
  sharded forms with an index), optionally with preprocessor_config.json;
- a state-dict file: .safetensors, or .pth / .pt / .bin (PyTorch pickles);
- a Hugging Face hub id ('nvidia/mit-b0'), fetched with huggingface_hub when online.

Checkpoints from the internet are untrusted. safetensors holds only tensors and is read with
NumPy (no PyTorch needed), and is preferred wherever a directory has both. PyTorch pickles are
read with `torch.load(weights_only=True)`, which refuses to run pickled code, and only with
torch >= 2.6 (older versions can be tricked, CVE-2025-32434); a file that needs more is refused
with an error, never loaded the unsafe way.
"""

import dataclasses
import json
import os
import re
from typing import Any

import numpy as np

from semseg_jax import checkpointing

PICKLE_SUFFIXES = ('.pth', '.pt', '.bin', '.ckpt')
# Wrappers around a state dict in training checkpoints (mmseg/mmcv 'state_dict', timm/DeiT
# 'model', DDP 'module').
_WRAPPER_KEYS = ('state_dict', 'model', 'module')


@dataclasses.dataclass
class Source:
  """What a source string points at, read."""
  origin: str  # A description for messages: the path (and what it is).
  state_dict: dict[str, np.ndarray] | None = None  # PyTorch-named tensors, or None for orbax.
  orbax_path: str | None = None  # The step directory of a semseg_jax checkpoint.
  hf_config: dict | None = None  # config.json of a Hugging Face directory.
  preprocessing: dict | None = None  # Recorded mean/std (0..255) and channel order, if any.
  recorded_config: str | None = None  # The training config an mmengine checkpoint records.


def read(source: str, field: str, tensors: bool = True) -> Source:
  """Reads `source` (the value of config field `field`, named in every error). With
  tensors=False, safetensors files give their names only (values None): enough to recognise a
  naming without reading the weights. (A pickle has to be read whole either way.)"""
  if os.path.isdir(source):
    if os.path.isfile(os.path.join(source, 'config.json')):
      return read_hf_directory(source, field, tensors=tensors)
    try:
      step_dir = checkpointing.find_checkpoint(source)
    except FileNotFoundError as e:
      raise ValueError(f'{field}={source!r} is a directory but neither a Hugging Face model '
                       f'directory (no config.json) nor a semseg_jax checkpoint: {e}') from e
    return Source(origin=f'semseg_jax checkpoint {step_dir}', orbax_path=step_dir,
                  preprocessing=read_recorded_preprocessing(step_dir))
  if os.path.isfile(source):
    if source.endswith(PICKLE_SUFFIXES):
      state_dict, recorded_config = _read_torch_pickle(source, field)
      return Source(origin=source, state_dict=state_dict, recorded_config=recorded_config)
    return Source(origin=source, state_dict=read_state_dict_file(source, field, tensors))
  if looks_like_hub_id(source):
    return read_hf_directory(download_from_hub(source, field), field, hub_id=source,
                             tensors=tensors)
  raise FileNotFoundError(
      f'{field}={source!r}: no such file or directory, and not a Hugging Face hub id '
      "('organisation/name'). Expected a semseg_jax checkpoint, a Hugging Face model "
      'directory, a .safetensors/.pth/.bin state dict, or a hub id.')


def looks_like_hub_id(source: str) -> bool:
  return re.fullmatch(r'[A-Za-z0-9][\w.-]*/[\w.-]+', source) is not None


def download_from_hub(hub_id: str, field: str) -> str:
  """The local snapshot of a hub model (weights, config, preprocessing only)."""
  try:
    import huggingface_hub  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ValueError(f'{field}={hub_id!r} looks like a Hugging Face hub id, but '
                     'huggingface_hub is not installed (pip install huggingface_hub).') from e
  patterns = ['config.json', 'preprocessor_config.json', '*.safetensors',
              'model.safetensors.index.json']
  try:
    directory = huggingface_hub.snapshot_download(hub_id, allow_patterns=patterns)
    if not any(n.endswith('.safetensors') for n in os.listdir(directory)):
      directory = huggingface_hub.snapshot_download(
          hub_id, allow_patterns=patterns + ['pytorch_model.bin', 'pytorch_model.bin.index.json',
                                             'pytorch_model-*.bin'])
  except Exception as e:  # huggingface_hub raises many kinds (offline, HTTP, not found).
    offline = huggingface_hub.constants.HF_HUB_OFFLINE
    raise ValueError(
        f'{field}={hub_id!r}: no such local path, and could not fetch it as a model from the '
        'Hugging Face hub'
        + (' because HF_HUB_OFFLINE is set' if offline else ' (no network, or no such repo)')
        + f' and it is not in the local cache ({type(e).__name__}: {e}). On a machine with '
        f'internet, `huggingface-cli download {hub_id}` and pass the downloaded directory '
        'instead.') from e
  return directory


def read_hf_directory(directory: str, field: str, hub_id: str | None = None,
                      tensors: bool = True) -> Source:
  """A Hugging Face model directory: safetensors first, then pytorch_model.bin."""
  with open(os.path.join(directory, 'config.json')) as f:
    hf_config = json.load(f)
  names = set(os.listdir(directory))
  if 'model.safetensors' in names:
    files = ['model.safetensors']
  elif 'model.safetensors.index.json' in names:
    files = _index_shards(os.path.join(directory, 'model.safetensors.index.json'))
  elif 'pytorch_model.bin' in names:
    files = ['pytorch_model.bin']
  elif 'pytorch_model.bin.index.json' in names:
    files = _index_shards(os.path.join(directory, 'pytorch_model.bin.index.json'))
  else:
    raise FileNotFoundError(f'{field}={hub_id or directory!r}: {directory} has config.json but '
                            'no model.safetensors or pytorch_model.bin (nor a sharded index).')
  state_dict = {}
  for name in files:
    state_dict.update(read_state_dict_file(os.path.join(directory, name), field, tensors))
  return Source(origin=f'{hub_id or directory} ({files[0]})', state_dict=state_dict,
                hf_config=hf_config, preprocessing=read_hf_preprocessing(directory))


def _index_shards(index_path: str) -> list[str]:
  with open(index_path) as f:
    return sorted(set(json.load(f)['weight_map'].values()))


def read_hf_preprocessing(directory: str) -> dict | None:
  """mean/std in 0..255 units from a preprocessor_config.json, if there is one."""
  path = os.path.join(directory, 'preprocessor_config.json')
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    processor = json.load(f)
  if 'image_mean' not in processor or 'image_std' not in processor:
    return None
  scale = 1.0 / processor['rescale_factor'] if processor.get('do_rescale', True) else 1.0
  return dict(mean=tuple(float(m) * scale for m in processor['image_mean']),
              std=tuple(float(s) * scale for s in processor['image_std']),
              channel_order='rgb')


PREPROCESSING_FILE = 'preprocessing.json'


def read_recorded_preprocessing(step_dir: str) -> dict | None:
  """The preprocessing `python -m semseg_jax.convert` recorded beside a checkpoint."""
  for directory in (step_dir, os.path.dirname(step_dir), os.path.dirname(os.path.dirname(
      step_dir))):
    path = os.path.join(directory, PREPROCESSING_FILE)
    if os.path.isfile(path):
      with open(path) as f:
        recorded = json.load(f)
      return dict(mean=tuple(recorded['mean']), std=tuple(recorded['std']),
                  channel_order=recorded['channel_order'])
  return None


def read_state_dict_file(path: str, field: str, tensors: bool = True) -> dict[str, np.ndarray]:
  """{name: array} of a .safetensors file (NumPy only; names only, values None, with
  tensors=False) or a PyTorch pickle (weights only)."""
  if path.endswith('.safetensors'):
    return _read_safetensors(path, field, tensors)
  if path.endswith(PICKLE_SUFFIXES):
    return _read_torch_pickle(path, field)[0]
  raise ValueError(f'{field}={path!r}: unknown file type; expected .safetensors, or a PyTorch '
                   f'state dict ({", ".join(PICKLE_SUFFIXES)}).')


def _read_safetensors(path: str, field: str, tensors: bool) -> dict[str, np.ndarray]:
  from safetensors import safe_open  # pylint: disable=g-import-not-at-top
  try:
    with safe_open(path, framework='numpy') as f:
      return {k: f.get_tensor(k) if tensors else None for k in f.keys()}
  except Exception as e:  # Corrupt header, truncated file, unsupported dtype...
    raise ValueError(f'{field}={path!r}: cannot read this safetensors file: {e}') from e


# torch.load(weights_only=True) can be made to run code by a crafted file before this version
# (CVE-2025-32434, GHSA-53q9-r3pm-6pq6).
SAFE_TORCH = (2, 6)


def check_torch_version(version: str, path: str, field: str) -> None:
  """Refuses to read pickles with a PyTorch whose weights_only loading is not safe."""
  numbers = re.match(r'(\d+)\.(\d+)', version)
  if numbers is None or tuple(int(n) for n in numbers.groups()) < SAFE_TORCH:
    raise ValueError(
        f'{field}={path!r} is a PyTorch pickle, and the installed torch {version} can be made '
        'to run code while loading one (CVE-2025-32434; fixed in torch 2.6): it is not read. '
        'Install torch>=2.6, or use a .safetensors file, which needs no torch.')


def _read_torch_pickle(path: str, field: str) -> tuple[dict[str, np.ndarray], str | None]:
  """The state dict of a PyTorch pickle, and the config text an mmengine checkpoint records
  under meta['cfg'] (None if none)."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ValueError(f'{field}={path!r} is a PyTorch pickle; reading it needs PyTorch (pip '
                     'install torch; the CPU build is enough), or convert it to .safetensors '
                     'first.') from e
  check_torch_version(torch.__version__, path, field)
  import pickle  # pylint: disable=g-import-not-at-top
  try:
    loaded = torch.load(path, map_location='cpu', weights_only=True)
  except pickle.UnpicklingError as e:
    raise ValueError(
        f'{field}={path!r} needs more than tensors to load (it pickles other Python objects), '
        'and checkpoints are untrusted: it is not loaded. Re-save its state dict (or '
        f'.safetensors) where you trust it. PyTorch said: {str(e).splitlines()[0]}') from e
  except Exception as e:  # Truncated or not a PyTorch file at all.
    raise ValueError(f'{field}={path!r}: not a readable PyTorch checkpoint: {e}') from e
  meta = loaded.get('meta') if isinstance(loaded, dict) else None
  recorded_config = meta.get('cfg') if isinstance(meta, dict) else None
  return (_tensors_to_numpy(_unwrap(loaded, path, field), torch),
          recorded_config if isinstance(recorded_config, str) else None)


def _unwrap(loaded: Any, path: str, field: str) -> dict:
  """The state dict inside a training checkpoint ({'state_dict': ...}, {'model': ...})."""
  while isinstance(loaded, dict):
    wrapper = next((k for k in _WRAPPER_KEYS if isinstance(loaded.get(k), dict)), None)
    if wrapper is None:
      break
    loaded = loaded[wrapper]
  if not isinstance(loaded, dict) or not loaded:
    raise ValueError(f'{field}={path!r}: expected a state dict (name -> tensor), found '
                     f'{type(loaded).__name__}.')
  if all(k.startswith('module.') for k in loaded):  # Saved from DistributedDataParallel.
    loaded = {k[len('module.'):]: v for k, v in loaded.items()}
  return loaded


def _tensors_to_numpy(state_dict: dict, torch: Any) -> dict[str, np.ndarray]:
  arrays = {}
  for key, value in state_dict.items():
    if not isinstance(value, torch.Tensor):
      continue  # Non-tensor entries (version numbers, metadata) are not weights.
    if value.is_floating_point():
      value = value.float()  # bfloat16/float16 -> float32 (NumPy has no bfloat16).
    arrays[key] = value.detach().cpu().numpy()
  return arrays
