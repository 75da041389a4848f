"""Command-line tools that prepare inputs for training (e.g. converted ImageNet weights)."""
