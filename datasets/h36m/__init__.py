"""Human3.6M dataset builder (see h36m_dataset_builder.py)."""
