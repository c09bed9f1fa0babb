"""Transparent huge pages for the large buffers of a run on the CPU.

XLA:CPU allocates the buffers of a computation (its outputs and temporaries) with glibc's
malloc at each call, and glibc serves a large request with freshly mapped memory, so every call
pays one page fault for each 4 KiB page it writes. On the project's AMD EPYC machines, where
the kernel gives transparent huge pages (2 MiB) only to memory that asks for them (THP mode
`madvise`), a jitted elementwise product writing 79 MB took 46 ms, 5 ms when it wrote into a
donated buffer, and 11 ms with glibc's tunable `glibc.malloc.hugetlb=1` (glibc >= 2.35), with
which malloc asks for huge pages (README, Speed against PyTorch, has whole steps).

glibc reads its tunables once, when a process starts, so `restart_with_huge_pages` sets
GLIBC_TUNABLES and executes the same command again in the same process (same PID, arguments
and environment otherwise) before anything heavy is imported. It does nothing where that would
not help: not glibc or one older than 2.35, THP mode `always` (every large mapping gets huge
pages already) or `never`, or a GLIBC_TUNABLES that names the tunable already (set
`GLIBC_TUNABLES=glibc.malloc.hugetlb=0` to keep 4 KiB pages).
"""

import os
import sys

TUNABLE = 'glibc.malloc.hugetlb'
THP_MODE_FILE = '/sys/kernel/mm/transparent_hugepage/enabled'


def glibc_version() -> tuple[int, int] | None:
  """(major, minor) of the C library this process runs on, or None where it is not glibc."""
  try:
    name, version = os.confstr('CS_GNU_LIBC_VERSION').split()
    major, minor = version.split('.')[:2]
    return (int(major), int(minor)) if name == 'glibc' else None
  except (AttributeError, ValueError, OSError):  # No confstr, not that name, or not glibc.
    return None


def thp_mode(path: str = THP_MODE_FILE) -> str | None:
  """The kernel's transparent huge page mode ('always', 'madvise' or 'never'), or None."""
  try:
    with open(path) as f:
      words = f.read().split()
  except OSError:
    return None
  chosen = [w[1:-1] for w in words if w.startswith('[') and w.endswith(']')]
  return chosen[0] if chosen else None


def environment_with_huge_pages(environ: dict[str, str], glibc: tuple[int, int] | None,
                                mode: str | None) -> dict[str, str] | None:
  """The environment to start again with (environ plus the tunable), or None where starting
  again would change nothing."""
  if glibc is None or glibc < (2, 35) or mode != 'madvise':
    return None
  tunables = environ.get('GLIBC_TUNABLES', '')
  if TUNABLE in tunables:
    return None
  return {**environ, 'GLIBC_TUNABLES': ':'.join(t for t in (tunables, f'{TUNABLE}=1') if t)}


def restart_with_huge_pages() -> None:
  """Executes this process's command again with `glibc.malloc.hugetlb=1` where that helps (see
  the module docstring); returns only where it does not. Call it first thing in a command's
  entry point: whatever the process did before is lost."""
  environ = environment_with_huge_pages(dict(os.environ), glibc_version(), thp_mode())
  if environ is None:
    return
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, sys.orig_argv, environ)
