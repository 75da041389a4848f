"""The synthetic_humans dataset (see README.md)."""
