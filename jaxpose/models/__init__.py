"""Flax Linen modules of jaxpose."""
