"""The discovery study: see :mod:`symbench.studies.discovery.run`."""
