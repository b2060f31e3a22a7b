"""Hydra sweeper of the suite (``hydra/sweeper=listing``, the default of src.train / src.eval multiruns)."""
