"""Hydra plugin package of imprint_bench (found by Hydra's plugin discovery under ``hydra_plugins``)."""
