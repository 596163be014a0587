"""The nbody study: see :mod:`symbench.studies.nbody.run`."""
