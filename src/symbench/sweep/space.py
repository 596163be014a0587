"""Search spaces of ``sweeps/<benchmark>/<family>.yaml``: which models they cover, the paper's ranges (TPE) and the
grid (one trial per point), with keys that are the command line's dotted paths.

A dotted key names one argument of a run: ``model.lr`` (the LightningModule), ``model.model_hparams.width`` (the
network), ``data.batch_size`` (the datamodule; ``data.init_args.*`` is accepted too) or ``trainer.max_epochs``.
:func:`symbench.config.to_overrides` turns a trial's parameters into the ``data``/``module``/``model_hparams``/``trainer`` sections
of :class:`symbench.config.RunConfig`, so a trial is exactly ``symbench fit`` with those overrides.
"""

from __future__ import annotations

import fnmatch
import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from symbench.config import REPO_ROOT, ConfigError, to_overrides
from symbench.files import load_yaml

SAMPLERS = ("grid", "tpe")
PRUNERS = ("median", "none")


def sweeps_dir() -> Path:
    return Path(os.environ.get("SYMBENCH_SWEEPS", REPO_ROOT / "sweeps"))


@dataclass
class SearchSpace:
    """One sweep file. ``ranges``: key -> list (categorical) or ``{low, high[, log, step]}``; ``grid``: key -> list."""

    path: Path
    benchmarks: tuple[str, ...]  # `benchmark:` in the file, one name or a list (a family sharing one space)
    models: list[str]
    objective: str
    sampler: str
    pruner: dict[str, Any]
    ranges: dict[str, Any]
    grid: dict[str, list[Any]]

    def covers(self, model: str) -> bool:
        names = (model, model.partition("@")[0])  # a model from outside symbench also without its @version
        return any(fnmatch.fnmatchcase(n, pattern) for n in names for pattern in self.models)

    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the grid, in a fixed order (the manifest)."""
        keys = list(self.grid)
        return [dict(zip(keys, values)) for values in itertools.product(*(self.grid[k] for k in keys))]

    def suggest(self, trial: Any, sampler: str) -> dict[str, Any]:
        """Ask ``trial`` for every parameter (enqueued trials get their fixed values back)."""
        if sampler == "grid":
            return {k: trial.suggest_categorical(k, v) for k, v in self.grid.items()}
        params = {}
        for key, rng in self.ranges.items():
            if isinstance(rng, list):
                params[key] = trial.suggest_categorical(key, rng)
            elif all(isinstance(rng[b], int) for b in ("low", "high")):  # integer bounds: an integer (widths)
                params[key] = trial.suggest_int(key, rng["low"], rng["high"], step=rng.get("step", 1),
                                                log=bool(rng.get("log", False)))
            else:
                params[key] = trial.suggest_float(key, float(rng["low"]), float(rng["high"]),
                                                  log=bool(rng.get("log", False)), step=rng.get("step"))
        return params


def load_space(benchmark: str, model: str, path: str | Path | None = None, preset: str | None = None) -> SearchSpace:
    """The sweep file for ``model`` (``path``, or the first file of ``sweeps/*/`` whose ``benchmark`` names
    ``benchmark`` and whose ``models`` match), with the file's ``presets.<preset>`` entries replacing those keys of
    ``space`` / ``grid``."""
    candidates = [Path(path)] if path else sorted(sweeps_dir().glob("*/*.yaml"))
    if path and not candidates[0].is_file():
        raise FileNotFoundError(f"no sweep file {path}; give an existing YAML search space")
    for file in candidates:
        space = _parse(file, preset)
        if path:
            if benchmark not in space.benchmarks:
                raise ConfigError(f"{file} is a search space for benchmark(s) {', '.join(space.benchmarks)}, "
                                  f"not {benchmark!r}")
            return space
        if benchmark in space.benchmarks and space.covers(model):
            return space
    raise ConfigError(f"no search space for model {model!r} of benchmark {benchmark!r} in {sweeps_dir()}; add a YAML "
                      f"file whose `benchmark` and `models` match it (see sweeps/rbc/unet.yaml)")


def _parse(file: Path, preset: str | None = None) -> SearchSpace:
    raw = load_yaml(file) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: a sweep file is a mapping of benchmark, models, space, grid "
                          f"(see sweeps/rbc/unet.yaml)")
    missing = [k for k in ("benchmark", "models", "space", "grid") if k not in raw]
    if missing:
        raise ConfigError(f"{file} lacks {', '.join(missing)}; see sweeps/rbc/unet.yaml for the layout")
    for section, values in (raw.get("presets", {}) or {}).get(preset, {}).items():
        if section not in ("space", "grid"):
            raise ConfigError(f"{file}: presets.{preset} may only hold space and grid entries, not {section!r}")
        raw[section] = {**raw[section], **values}
    pruner = raw.get("pruner") or {"type": "none"}
    named = raw["benchmark"]
    space = SearchSpace(path=file, benchmarks=tuple(named if isinstance(named, list) else [named]),
                        models=list(raw["models"]),
                        objective=raw.get("objective", "val/rmse"), sampler=raw.get("sampler", "grid"),
                        pruner=dict(pruner), ranges=dict(raw["space"]), grid=dict(raw["grid"]))
    check_choice("sampler", space.sampler, SAMPLERS)
    check_choice("pruner", space.pruner.get("type", "none"), PRUNERS)
    if space.objective != "val/rmse":
        raise ConfigError(f"{file}: objective {space.objective!r} is not logged; use val/rmse")
    to_overrides(dict.fromkeys([*space.ranges, *space.grid]))  # raises on a key that names no argument
    for key, rng in space.ranges.items():
        check_range(file, key, rng)
    for key, values in space.grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{file}: grid entry {key!r} must be a non-empty list of values")
    for key, value in _leaves({**space.ranges, **space.grid}):
        if isinstance(value, str) and _is_number(value):
            raise ConfigError(f"{file}: {key} value {value!r} is a string to YAML; write it with a dot, e.g. 1.0e-3")
    return space


def check_range(file: Path, key: str, rng: Any) -> None:
    """A ``space`` entry is a non-empty list (categorical) or ``{low, high[, log][, step]}`` with numbers
    ``low < high`` (``low > 0`` when ``log``); anything else raises one line naming the file and key."""
    if isinstance(rng, list):
        if not rng:
            raise ConfigError(f"{file}: space entry {key!r} is an empty list; give at least one value")
        return
    if not isinstance(rng, dict):
        raise ConfigError(f"{file}: space entry {key!r} must be a list of values or {{low, high[, log, step]}}, "
                          f"got {rng!r}")
    missing = [b for b in ("low", "high") if b not in rng]
    unknown = sorted(set(rng) - {"low", "high", "log", "step"})
    if missing or unknown:
        what = f"lacks {', '.join(missing)}" if missing else f"has unknown key(s) {', '.join(unknown)}"
        raise ConfigError(f"{file}: space entry {key!r} {what}; write {{low: ..., high: ...[, log: true][, step: ...]}}")
    bounds = [rng["low"], rng["high"], *([rng["step"]] if rng.get("step") is not None else [])]
    if not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds):
        raise ConfigError(f"{file}: space entry {key!r} needs numbers for low/high/step, got {rng!r}")
    if not rng["low"] < rng["high"] or (rng.get("log") and rng["low"] <= 0):
        raise ConfigError(f"{file}: space entry {key!r} needs low < high (and low > 0 with log), got {rng!r}")


def _leaves(tree: dict[str, Any]) -> list[tuple[str, Any]]:
    out = []
    for key, value in tree.items():
        values = value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]
        out += [(key, v) for v in values]
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {what} {value!r}; choose from {', '.join(choices)}")
