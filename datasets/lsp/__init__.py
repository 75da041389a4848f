"""LSP and LSP-extended (2D labels, in the wild) as jaxpose person crops."""
