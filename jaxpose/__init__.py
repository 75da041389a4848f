"""jaxpose: monocular 3D human pose with explicit 2D latent heatmaps and a learned
weak-perspective camera (Habibie et al., CVPR 2019), in JAX/Flax."""
