"""semseg_jax/huge_pages.py: when a command starts again with glibc's huge-page tunable, and that
it does start again (a real process, re-executed once, its arguments kept)."""

import os
import subprocess
import sys

import pytest

from semseg_jax import huge_pages

GLIBC, MADVISE = (2, 36), 'madvise'


def test_the_tunable_is_added_only_where_it_helps():
  environ = {'PATH': '/bin'}
  assert huge_pages.environment_with_huge_pages(environ, GLIBC, MADVISE) == {
      'PATH': '/bin', 'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=1'}
  assert environ == {'PATH': '/bin'}  # Not changed in place.
  # Other tunables stay, the new one is appended.
  assert huge_pages.environment_with_huge_pages(
      {'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2'}, GLIBC, MADVISE) == {
          'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1'}
  # Nothing to gain: the user chose already, THP everywhere or nowhere, not glibc, too old.
  assert huge_pages.environment_with_huge_pages(
      {'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=0'}, GLIBC, MADVISE) is None
  assert huge_pages.environment_with_huge_pages({}, GLIBC, 'always') is None
  assert huge_pages.environment_with_huge_pages({}, GLIBC, 'never') is None
  assert huge_pages.environment_with_huge_pages({}, GLIBC, None) is None
  assert huge_pages.environment_with_huge_pages({}, None, MADVISE) is None
  assert huge_pages.environment_with_huge_pages({}, (2, 34), MADVISE) is None
  assert huge_pages.environment_with_huge_pages({}, (2, 35), MADVISE) is not None


def test_thp_mode_reads_the_bracketed_word(tmp_path):
  path = tmp_path / 'enabled'
  path.write_text('always [madvise] never\n')
  assert huge_pages.thp_mode(str(path)) == 'madvise'
  path.write_text('[always] madvise never\n')
  assert huge_pages.thp_mode(str(path)) == 'always'
  assert huge_pages.thp_mode(str(tmp_path / 'missing')) is None


def test_glibc_version_of_this_process():
  version = huge_pages.glibc_version()
  if sys.platform.startswith('linux') and os.confstr('CS_GNU_LIBC_VERSION').startswith('glibc'):
    assert isinstance(version, tuple) and len(version) == 2 and version >= (2, 17)
  else:
    assert version is None


_CHILD = """
import os, sys
from semseg_jax import huge_pages
print('start', os.environ.get('GLIBC_TUNABLES'), sys.argv[1:], flush=True)
huge_pages.restart_with_huge_pages()
print('running', os.environ.get('GLIBC_TUNABLES'), sys.argv[1:], flush=True)
"""


@pytest.mark.skipif(huge_pages.environment_with_huge_pages(
    {}, huge_pages.glibc_version(), huge_pages.thp_mode()) is None,
                    reason='this machine gains nothing from the tunable, so nothing restarts')
def test_a_command_starts_again_once_with_the_tunable_and_its_arguments():
  environ = {k: v for k, v in os.environ.items() if k != 'GLIBC_TUNABLES'}
  out = subprocess.run([sys.executable, '-c', _CHILD, '--flag=1', 'x'], env=environ,
                       capture_output=True, text=True, check=True).stdout.splitlines()
  assert out == ["start None ['--flag=1', 'x']",
                 "start glibc.malloc.hugetlb=1 ['--flag=1', 'x']",
                 "running glibc.malloc.hugetlb=1 ['--flag=1', 'x']"]
  # The user's own choice: no restart.
  environ['GLIBC_TUNABLES'] = 'glibc.malloc.hugetlb=0'
  out = subprocess.run([sys.executable, '-c', _CHILD], env=environ, capture_output=True,
                       text=True, check=True).stdout.splitlines()
  assert out == ['start glibc.malloc.hugetlb=0 []', 'running glibc.malloc.hugetlb=0 []']
