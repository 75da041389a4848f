"""MPII Human Pose (2D labels, in the wild) as jaxpose person crops."""
