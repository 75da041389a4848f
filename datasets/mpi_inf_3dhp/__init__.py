"""MPI-INF-3DHP dataset builder (see mpi_inf_3dhp_dataset_builder.py)."""
