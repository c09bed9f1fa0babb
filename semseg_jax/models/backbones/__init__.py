"""Backbones: modules that map images to a list of feature maps, finest first."""
