"""The --config argument of the command-line programs: a config file's path, or the name of a
config in the `configs` package (`--config=ade20k_segformer:b2`), so that an installed package
finds its configs as a checkout does; and a clear message when neither exists."""

import importlib.util
import os
import pathlib
import sys


def configs_dir() -> pathlib.Path | None:
  """Where the `configs` package lives (the checkout's when run from its root, else the installed
  one), without importing it; None if there is none."""
  spec = importlib.util.find_spec('configs')
  if spec is None or not spec.submodule_search_locations:
    return None
  return pathlib.Path(next(iter(spec.submodule_search_locations)))


def resolve(value: str) -> str:
  """`value` (path[:arguments]) with a config's name replaced by its file's path; a path that
  exists, or anything that is not a known name, is returned as it is."""
  path, colon, arguments = value.partition(':')
  if os.path.isfile(path) or path.endswith('.py') or os.sep in path:
    return value
  directory = configs_dir()
  if directory is None or not (directory / f'{path}.py').is_file():
    return value
  return f'{directory / path}.py{colon}{arguments}'


def _config_values(argv: list[str]):
  """(index, value) of each --config in argv (`--config=v` or `--config v`)."""
  for i, arg in enumerate(argv):
    if arg.startswith('--config='):
      yield i, arg[len('--config='):]
    elif arg == '--config' and i + 1 < len(argv):
      yield i + 1, argv[i + 1]


def resolve_argv(argv: list[str]) -> list[str]:
  """argv with its --config value resolved (see `resolve`)."""
  argv = list(argv)
  for i, value in _config_values(argv):
    argv[i] = (f'--config={resolve(value)}' if argv[i].startswith('--config=')
               else resolve(value))
  return argv


def problem(argv: list[str]) -> str | None:
  """What is wrong with the --config of `argv`, if its file does not exist (config_flags' own
  error ends on a line that names no path)."""
  for _, value in _config_values(argv):
    path = value.split(':', 1)[0]
    if not os.path.isfile(path):
      directory = configs_dir()
      names = f'the name of a config in {directory}' if directory else 'a config name'
      return (f'--config={value}: no config file {path!r} (give a path, relative to '
              f'{os.getcwd()}, or {names}, e.g. ade20k_segformer; arguments follow a colon, '
              'e.g. ade20k_segformer:b2).')
  return None


def checked_argv(argv: list[str]) -> list[str]:
  """What a command-line program hands to absl: `argv` with its --config resolved (see
  `resolve`); exits with `problem`'s message if that file does not exist."""
  argv = resolve_argv(argv)
  message = problem(argv[1:])
  if message:
    sys.exit(message)
  return argv
