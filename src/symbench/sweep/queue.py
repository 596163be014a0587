"""The shared trial queue of a sweep: storage, atomic claims, heartbeats and retries of trials whose worker died.

Storage: an Optuna journal file by default (no server; ``JournalFileBackend`` locks the file, so processes of one
machine or of an NFS share can append to it), or a database URL (``postgresql://...``, ``mysql://...``,
``sqlite:///...``) for many machines.

Claims: a waiting (enqueued) trial is taken by moving it WAITING -> RUNNING in the storage, which succeeds for
exactly one process (Optuna's own compare-and-set, the one ``Study.ask`` uses), so a grid manifest is run once per
point however many workers share it.

Heartbeats: Optuna's own heartbeat exists only for database storages, so a worker records the time in the trial's
user attribute :data:`HEARTBEAT` every ``interval`` seconds, in every storage. A RUNNING trial whose heartbeat is
older than ``grace`` seconds belongs to a dead worker: the first process to notice moves it to FAIL (again a
compare-and-set that one process wins) and enqueues a copy with the same parameters (``retry_of`` = its number),
up to ``max_retry`` times per grid point.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, Trial, TrialState

HEARTBEAT = "symbench_heartbeat"
RETRY_OF = "retry_of"
RETRIES = "retries"
DB_SCHEMES = ("postgresql", "mysql", "sqlite", "oracle", "mssql")


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """A database URL -> ``RDBStorage``; anything else is the path of a journal file (its folder is created)."""
    if url.split(":", 1)[0].split("+", 1)[0] in DB_SCHEMES:
        return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    path = Path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    backend = optuna.storages.journal.JournalFileBackend(str(path))
    return optuna.storages.JournalStorage(backend)


class TrialQueue:
    """A study and its storage (opened by us, so trials are addressed through the public storage API)."""

    def __init__(self, study: optuna.Study, storage: optuna.storages.BaseStorage) -> None:
        self.study, self.storage = study, storage
        self._study_id = storage.get_study_id_from_name(study.study_name)

    def trials(self, *states: TrialState) -> list[FrozenTrial]:
        return self.study.get_trials(deepcopy=False, states=states or None)

    def _trial_id(self, number: int) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self._study_id, number)

    def _set_state(self, trial_id: int, state: TrialState) -> bool:
        """Compare-and-set of a trial's state; True for the one process whose change took effect."""
        try:
            return bool(self.storage.set_trial_state_values(trial_id, state=state))
        except UpdateFinishedTrialError:
            return False

    def claim_waiting(self) -> Trial | None:
        """Take one enqueued trial (WAITING -> RUNNING); None when the queue is empty."""
        for frozen in self.trials(TrialState.WAITING):
            trial_id = self._trial_id(frozen.number)
            if self._set_state(trial_id, TrialState.RUNNING):
                return Trial(self.study, trial_id)
        return None

    def fail_stale(self, grace: float, max_retry: int) -> list[int]:
        """Fail RUNNING trials without a heartbeat for ``grace`` s and enqueue their retries; returns their numbers."""
        failed = []
        now = time.time()
        for frozen in self.trials(TrialState.RUNNING):
            if now - last_beat(frozen) <= grace:
                continue
            if not self._set_state(self._trial_id(frozen.number), TrialState.FAIL):
                continue
            failed.append(frozen.number)
            retries = int(frozen.user_attrs.get(RETRIES, 0))
            if retries < max_retry:
                root = frozen.user_attrs.get(RETRY_OF, frozen.number)
                params = frozen.params or frozen.system_attrs.get("fixed_params", {})
                self.study.enqueue_trial(params, user_attrs={RETRY_OF: root, RETRIES: retries + 1})
        return failed

    def retries(self) -> int:
        """Trials enqueued as retries (each replaces one failed trial of a dead worker)."""
        return sum(RETRY_OF in t.user_attrs for t in self.trials())

    def counted(self) -> int:
        """Trials that use up a TPE budget: every trial except the failed ones that a retry replaced."""
        return len(self.trials()) - self.retries()


def last_beat(trial: FrozenTrial) -> float:
    start = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
    return float(trial.user_attrs.get(HEARTBEAT, start))


class Heartbeat:
    """Context manager: record the time in ``trial``'s user attributes every ``interval`` s from a daemon thread."""

    def __init__(self, trial: Trial, interval: float) -> None:
        self.trial, self.interval = trial, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self._stop.is_set():
            try:
                self.trial.set_user_attr(HEARTBEAT, time.time())
            except (UpdateFinishedTrialError, RuntimeError):
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
