"""The sr3d study: see :mod:`symbench.studies.sr3d.run`."""
