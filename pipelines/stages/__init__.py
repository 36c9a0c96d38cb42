"""One module per stage; each is declared in :mod:`pipelines.registry`."""
