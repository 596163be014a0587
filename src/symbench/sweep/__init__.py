"""Optuna sweeps over ``sweeps/<benchmark>/*.yaml`` search spaces (:mod:`.space`), shared by worker processes
through a trial queue with heartbeats (:mod:`.queue`), run by ``symbench sweep`` (:mod:`.run`)."""
