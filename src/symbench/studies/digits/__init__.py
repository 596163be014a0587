"""The digits study: see :mod:`symbench.studies.digits.run`."""
