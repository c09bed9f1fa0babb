"""Shared test setup: grain reads absl flags, which pytest never parses."""

from absl import flags

flags.FLAGS.mark_as_parsed()
