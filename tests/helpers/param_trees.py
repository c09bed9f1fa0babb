"""Parameter trees as sets of module paths, and brace patterns that spell such sets compactly
(the model tests check the names that converters, optimizer rules and checkpoints rely on)."""

import itertools
import re
from typing import Any

from flax.traverse_util import flatten_dict


def modules(tree: Any) -> set[str]:
  """'a/b' for every module a/b holding parameters directly (the leaves' parents) in a (possibly
  abstract) variable tree."""
  return {'/'.join(path[:-1]) for path in flatten_dict(dict(tree))}


def leaves(tree: Any) -> set[str]:
  """'a/b/kernel' for every leaf of a (possibly abstract) variable tree."""
  return {'/'.join(path) for path in flatten_dict(dict(tree))}


def _split_top(text: str) -> list[str]:
  """`text` split at the commas outside braces."""
  parts, depth, start = [], 0, 0
  for i, char in enumerate(text):
    depth += {'{': 1, '}': -1}.get(char, 0)
    if char == ',' and depth == 0:
      parts.append(text[start:i])
      start = i + 1
  return parts + [text[start:]]


def _expand_one(pattern: str) -> list[str]:
  start = pattern.find('{')
  if start < 0:
    return [pattern]
  depth = 0
  for end in range(start, len(pattern)):
    depth += {'{': 1, '}': -1}.get(pattern[end], 0)
    if depth == 0:
      break
  inner, head, tail = pattern[start + 1:end], pattern[:start], pattern[end + 1:]
  numeric = re.fullmatch(r'(\d+)\.\.(\d+)', inner)
  if numeric:
    low, high = int(numeric[1]), int(numeric[2])
    step = 1 if low <= high else -1
    options = [str(i) for i in range(low, high + step, step)]
  else:
    options = [option.strip() for option in _split_top(inner)]
  expanded_tails = _expand_one(tail)
  return [head + option_expanded + rest
          for option in options for option_expanded in _expand_one(option)
          for rest in expanded_tails]


def expand(*patterns: str) -> set[str]:
  """Shell-style brace expansion of each pattern, nested braces and {a..b} ranges included:
  expand('x{1..2}/{a,b/{c,d}}') == {'x1/a', 'x1/b/c', 'x1/b/d', 'x2/a', 'x2/b/c', 'x2/b/d'}."""
  return set(itertools.chain.from_iterable(_expand_one(p) for p in patterns))

