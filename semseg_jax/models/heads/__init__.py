"""Decode heads: modules that map a backbone's list of features to logits."""
