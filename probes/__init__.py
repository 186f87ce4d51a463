"""Analyses built on the model's hook points (installed as ``air_interp.probes``)."""
