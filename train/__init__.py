"""The training package (installed as ``air_interp.train``)."""
