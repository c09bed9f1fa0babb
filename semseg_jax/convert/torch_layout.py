"""PyTorch state dict -> Flax variables, module by module.

A *naming* maps each of our module paths ('decode_head/psp_modules_0/conv', the '/'-joined
path of a module that holds leaves) to the PyTorch module prefix that holds its tensors
('decode_head.psp_modules.0.1.conv'), or to None when the source has no such module. What the
tensors are called under the prefix, and how they are laid out, follows from the kind of module
found under the path:

  params {kernel 4-D, [bias]}         Conv2d: weight [O, I/g, kh, kw] -> kernel [kh, kw, I/g, O]
  params {kernel 2-D, [bias]}         Linear: weight [O, I] -> kernel [I, O]
  params {scale, bias} + batch_stats  BatchNorm: weight, bias, running_mean, running_var
  params {scale, bias}                LayerNorm / GroupNorm: weight, bias
  params {slope}                      PReLU: weight [C]
  any other leaf X                    '<prefix>.X', as it is

A Linear weight feeding a 1x1 conv kernel (or a 1x1 conv weight feeding a Dense kernel) is
reshaped. BatchNorm's num_batches_tracked has no counterpart and is never reported.
"""

import dataclasses
from typing import Any, Callable, Mapping

import numpy as np

Naming = Callable[[str], 'str | None']

_BN_STATS = {'mean': 'running_mean', 'var': 'running_var'}


@dataclasses.dataclass(frozen=True)
class Mismatch:
  """A source tensor whose shape cannot fill its leaf."""
  key: str
  source_shape: tuple[int, ...]
  leaf_path: str
  model_shape: tuple[int, ...]

  def __str__(self) -> str:
    return (f'{self.key}: source {_shape_str(self.source_shape)} vs model '
            f'{_shape_str(self.model_shape)} at {self.leaf_path}')


@dataclasses.dataclass
class Conversion:
  """What convert_state_dict did: the variables, and every name that did not fit."""
  variables: dict  # The given structure; leaves found in the source replaced by NumPy arrays.
  assigned: dict[str, str]  # Our leaf path ('params/a/b/kernel') -> source key.
  missing: list[str]  # Source keys the naming asked for that the state dict lacks.
  mismatched: list[Mismatch]
  unused: list[str]  # Source keys nothing asked for (num_batches_tracked left out).
  missing_leaves: dict[str, str] = dataclasses.field(default_factory=dict)  # Leaf -> its key.

  @property
  def complete(self) -> bool:
    return not (self.missing or self.mismatched or self.unused)


def strip_data_parallel(key: str) -> str:
  """A state-dict key without the 'module.' that nn.DataParallel puts before every key."""
  return key[len('module.'):] if key.startswith('module.') else key


def module_leaves(variables: Mapping[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
  """{module path: {collection: {leaf name: leaf}}} of nested variables."""
  modules: dict[str, dict[str, dict[str, Any]]] = {}

  def visit(collection, prefix, node):
    for name, child in node.items():
      if isinstance(child, Mapping):
        visit(collection, prefix + (name,), child)
      else:
        modules.setdefault('/'.join(prefix), {}).setdefault(collection, {})[name] = child

  for collection, tree in variables.items():
    visit(collection, (), tree)
  return modules


def _leaf_sources(leaves: dict[str, dict[str, Any]], prefix: str) -> dict[tuple[str, str], str]:
  """(collection, leaf name) -> source key for one module, by its kind."""
  params, stats = leaves.get('params', {}), leaves.get('batch_stats', {})
  sources = {}
  for name in params:
    torch_name = {'kernel': 'weight', 'scale': 'weight', 'slope': 'weight'}.get(name, name)
    sources[('params', name)] = f'{prefix}.{torch_name}'
  for name in stats:
    sources[('batch_stats', name)] = f'{prefix}.{_BN_STATS.get(name, name)}'
  return sources


def _to_flax(tensor: np.ndarray, leaf_name: str, shape: tuple[int, ...]) -> np.ndarray | None:
  """The source tensor in our layout for a leaf of `shape`, or None if it cannot fit."""
  tensor = np.asarray(tensor)
  if leaf_name == 'kernel' and len(shape) == 4:
    if tensor.ndim == 2:  # Linear -> 1x1 conv.
      tensor = tensor[:, :, None, None]
    if tensor.ndim == 4:
      tensor = tensor.transpose(2, 3, 1, 0)
  elif leaf_name == 'kernel' and len(shape) == 2:
    if tensor.ndim == 4 and tensor.shape[2:] == (1, 1):  # 1x1 conv -> Linear.
      tensor = tensor[:, :, 0, 0]
    if tensor.ndim == 2:
      tensor = tensor.T
  return tensor if tensor.shape == tuple(shape) else None


def _shape_str(shape: tuple[int, ...]) -> str:
  return '(' + ', '.join(str(d) for d in shape) + ')'


def convert_state_dict(state_dict: Mapping[str, Any], variables: Mapping[str, Any],
                       key_of: Naming) -> Conversion:
  """Fills `variables` (nested dicts of arrays or ShapeDtypeStructs) from a PyTorch state dict
  whose names `key_of` gives, module by module; reports what did not fit."""
  converted = _copy_tree(variables)
  assigned, missing, mismatched, missing_leaves = {}, [], [], {}
  used = set()
  for path, leaves in module_leaves(variables).items():
    prefix = key_of(path)
    if prefix is None:
      continue
    for (collection, name), key in _leaf_sources(leaves, prefix).items():
      leaf = leaves[collection][name]
      leaf_path = '/'.join(filter(None, (collection, path, name)))
      if key not in state_dict:
        missing.append(key)
        missing_leaves[leaf_path] = key
        continue
      used.add(key)
      value = _to_flax(state_dict[key], name, tuple(leaf.shape))
      if value is None:
        mismatched.append(Mismatch(key, tuple(np.shape(state_dict[key])), leaf_path,
                                   tuple(leaf.shape)))
        continue
      _set(converted, leaf_path.split('/'), value.astype(np.dtype(leaf.dtype)))
      assigned[leaf_path] = key
  unused = sorted(k for k in state_dict
                  if k not in used and not k.endswith('num_batches_tracked'))
  return Conversion(converted, assigned, missing, mismatched, unused, missing_leaves)


def _copy_tree(tree: Mapping[str, Any]) -> dict:
  return {k: _copy_tree(v) if isinstance(v, Mapping) else v for k, v in tree.items()}


def _set(tree: dict, keys: list[str], value: Any) -> None:
  for key in keys[:-1]:
    tree = tree[key]
  tree[keys[-1]] = value
