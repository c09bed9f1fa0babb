"""The shape of the house: no import cycle inside semseg_jax (top-level or in a function), the
training loop a leaf that only main.py imports, no model file importing another model file."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / 'semseg_jax'


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT).with_suffix('').parts
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def _modules() -> dict[str, pathlib.Path]:
  return {_module_name(p): p for p in PACKAGE.rglob('*.py')}


def _imports(path: pathlib.Path, modules: dict[str, pathlib.Path]) -> set[str]:
  """The semseg_jax modules `path` imports, anywhere in it (`from a import b` counts as a.b
  when that is a module, else as a)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      for alias in node.names:
        name = f'{node.module}.{alias.name}'
        found.add(name if name in modules else node.module)
  return {name for name in found if name in modules}


def _graph() -> dict[str, set[str]]:
  modules = _modules()
  return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """The strongly connected components of more than one module (Tarjan)."""
  index, low, stack, on_stack, components = {}, {}, [], set(), []

  def visit(node):
    index[node] = low[node] = len(index)
    stack.append(node)
    on_stack.add(node)
    for target in sorted(graph[node]):
      if target not in index:
        visit(target)
        low[node] = min(low[node], low[target])
      elif target in on_stack:
        low[node] = min(low[node], index[target])
    if low[node] == index[node]:
      component = []
      while True:
        member = stack.pop()
        on_stack.discard(member)
        component.append(member)
        if member == node:
          break
      if len(component) > 1:
        components.append(sorted(component))

  for node in sorted(graph):
    if node not in index:
      visit(node)
  return components


def test_the_cycle_finder_finds_a_cycle():
  assert _cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]


def test_no_import_cycle_inside_the_package():
  assert _cycles(_graph()) == []


def test_the_training_loop_is_imported_by_main_only():
  importers = sorted(name for name, targets in _graph().items() if 'semseg_jax.train' in targets)
  assert importers == ['semseg_jax.main']


def test_no_model_file_imports_another_model_file():
  """models/<paper>.py holds what is unique to its paper; shared parts live in backbones/,
  heads/ and layers.py."""
  graph = _graph()
  model_files = {_module_name(p) for p in (PACKAGE / 'models').glob('*.py')
                 if p.name not in ('__init__.py', 'layers.py')}
  offenders = {name: sorted(graph[name] & model_files) for name in model_files
               if graph[name] & model_files}
  assert offenders == {}
  # Backbones and heads are shared parts: they import no model file either.
  parts = {name for name in graph if name.startswith(('semseg_jax.models.backbones',
                                                      'semseg_jax.models.heads'))}
  assert {name: sorted(graph[name] & model_files) for name in parts
          if graph[name] & model_files} == {}
