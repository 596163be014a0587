"""What ``symbench bench`` and ``symbench sweep`` share: where benchmarks live, :class:`ConfigError`, loading a
``benchmarks/<name>/benchmark.yaml`` and resolving one (benchmark, preset, model, seed) into a :class:`RunConfig`,
and :func:`to_overrides` (a sweep's dotted keys -> the run configuration's sections).

A benchmark is a YAML file ``benchmarks/<name>/benchmark.yaml`` (data family, splits, seeds, presets). A preset
gives the datamodule arguments (``data``), the Lightning module arguments (``module``), model hyperparameters
(``model_hparams``), Trainer arguments (``trainer``), and per-model Trainer and module arguments (``model_trainer``,
``model_module``, e.g. fewer epochs for a costly model) and ``early_stopping_patience`` (stop once the validation
RMSE has not improved for that many epochs; :mod:`symbench.plateau`). The keys of the per-model sections are model names or patterns
(``"*resnet"``; ``default`` means ``*``); every matching entry applies, in file order, an exact name last. A
registry entry's own datamodule options (``ModelSpec.data``, e.g. the Augm models' ``augment``) are added to
``data``. Presets change sizes, never code.

Layering: this module imports the registry and :mod:`symbench.forecast` (for the module's argument names), never
``bench`` or ``sweep``, which both import it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import inspect
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from symbench import hardware, models
from symbench.files import load_yaml
from symbench.provenance import REPO_ROOT, code_revision


class ConfigError(ValueError):
    """Bad benchmark name, preset or option; the message is one line that names the fix."""


def benchmarks_dir() -> Path:
    return Path(os.environ.get("SYMBENCH_BENCHMARKS", REPO_ROOT / "benchmarks"))


def available_benchmarks() -> list[str]:
    """The leaderboard benchmarks: every ``benchmarks/<name>/benchmark.yaml`` except the studies' (:func:`is_study`)."""
    return sorted(p.parent.name for p in benchmarks_dir().glob("*/benchmark.yaml") if not is_study(p.parent.name))


def is_study(name: str) -> bool:
    """Whether ``benchmarks/<name>/benchmark.yaml`` belongs to a paper study (top-level key ``study: true``): its
    presets size the study's own networks and are read by :mod:`symbench.studies`, never by ``bench``/``sweep``."""
    path = benchmarks_dir() / name / "benchmark.yaml"
    return path.is_file() and bool((load_yaml(path) or {}).get("study", False))


@dataclass
class RunConfig:
    """Everything one (benchmark, preset, model, seed) run needs; its hash identifies the configuration."""

    benchmark: str
    dataset: str
    preset: str
    model: str
    seed: int
    splits: list[str]
    data: dict[str, Any]
    module: dict[str, Any]
    model_hparams: dict[str, Any]
    trainer: dict[str, Any] = field(default_factory=dict)
    early_stopping_patience: int | None = None  # None: train all max_epochs
    tf32: bool = False  # TF32 matrix products / convolutions on CUDA (off: full float32)

    def hardware(self) -> hardware.Hardware:
        """The resolved device options (one-line ``ValueError`` for impossible ones)."""
        return hardware.resolve(self.trainer, self.tf32)

    def config_hash(self) -> str:
        """Twelve hex digits of the SHA-256 of everything but the seed and the data root (hashed as the default
        ``data``: the same data spelled ``../data`` or ``data`` are one configuration; the dataset's content key in
        every row tells data apart), and of the code revision of the model and data module
        (:func:`symbench.provenance.code_revision`). Device options count as resolved (:meth:`hardware`), and only
        where they differ from one CPU process in float32, so single-CPU hashes are those of earlier versions."""
        payload = {k: v for k, v in self.__dict__.items() if k not in ("seed", "tf32")}
        payload["data"] = {**self.data, **({"root": "data"} if "root" in self.data else {})}
        payload["code_rev"] = code_revision(self.model, self.dataset)
        payload["trainer"] = {k: v for k, v in self.trainer.items() if k not in hardware.DEVICE_KEYS}
        if device := self.hardware().hashed():  # resolved device options, where not one float32 CPU process
            payload["hardware"] = device
        return hash_config(payload)


def hash_config(payload: dict[str, Any]) -> str:
    """12 hex digits of the SHA-256 of ``payload`` as sorted-key JSON: the ``config_hash`` column of ``runs.csv``."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def load_benchmark(name: str) -> dict[str, Any]:
    path = benchmarks_dir() / name / "benchmark.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown benchmark {name!r}; available benchmarks: {', '.join(available_benchmarks())}")
    return load_yaml(path)


def per_model(section: dict[str, dict[str, Any]], model: str) -> dict[str, Any]:
    """Merge the entries of ``section`` whose key matches ``model`` (``default``/patterns in order, exact last)."""
    merged: dict[str, Any] = {}
    for key, values in section.items():
        if key != model and (key == "default" or fnmatch.fnmatchcase(model, key)):
            merged.update(values)
    merged.update(section.get(model, {}))
    return merged


def best_config(name: str, model: str, preset: str) -> dict[str, Any]:
    """The dotted-path overrides a sweep found best for ``model`` at ``preset`` (``benchmarks/<name>/best/<model>.yaml``,
    written by ``symbench sweep``); empty when there is none for this preset."""
    path = benchmarks_dir() / name / "best" / f"{model}.yaml"
    if not path.is_file():
        return {}
    doc = load_yaml(path) or {}
    return dict(doc.get("overrides", {})) if doc.get("preset") == preset else {}


def resolve(name: str, preset: str, model: str, seed: int, root: str | Path = "data",
            overrides: dict[str, dict[str, Any]] | None = None, use_best: bool = True, tf32: bool = False,
            width_factor: int = 1) -> RunConfig:
    """The run configuration of ``model`` at ``preset``: the preset's sections, then (``use_best``) the sweep's best
    configuration for this model and preset, then ``overrides`` (data/module/model_hparams/trainer sections), then
    the widths times ``width_factor`` (:func:`scale_widths`)."""
    bench = load_benchmark(name)
    if bench.get("study"):
        raise ConfigError(f"{name!r} is a study, not a leaderboard benchmark; run `symbench {name} --preset {preset}`")
    presets = bench["presets"]
    if preset not in presets:
        raise ConfigError(f"unknown preset {preset!r} for benchmark {name!r}; available presets: {', '.join(presets)}")
    model = models.canonical(model)  # unknown model -> KeyError listing them; outside symbench: name@version
    model_spec, key = models.spec(model), model.partition("@")[0]  # per-model sections name it without version
    p = presets[preset]
    trainer = {**p.get("trainer", {}), **per_model(p.get("model_trainer", {}), key)}
    cfg = RunConfig(
        benchmark=name, dataset=bench["dataset"], preset=preset, model=model, seed=seed, splits=list(bench["splits"]),
        data={**p.get("data", {}), **model_spec.data, "root": str(root), "test_splits": list(bench["splits"])},
        module={**p.get("module", {}), **per_model(p.get("model_module", {}), key)},
        model_hparams=per_model(p.get("model_hparams", {}), key),
        trainer=trainer,
        early_stopping_patience=_patience(p.get("early_stopping_patience"), name, preset), tf32=tf32,
    )
    if use_best and (best := best_config(name, model, preset)):
        for section, values in to_overrides(best).items():
            getattr(cfg, section).update(values)
    for section, values in (overrides or {}).items():
        getattr(cfg, section).update(values)
    if width_factor != 1:
        scale_widths(cfg, width_factor)
    epochs = cfg.trainer.get("max_epochs")
    if epochs is not None and (not isinstance(epochs, int) or epochs < 1):
        raise ConfigError(f"max_epochs {epochs!r} for model {model!r}: a run trains at least one epoch "
                          f"(--max-epochs N with N >= 1)")
    return cfg


WIDTH_KEYS = ("width", "hidden_width")  # the model_hparams that set a model's size


def scale_widths(cfg: RunConfig, factor: int) -> None:
    """Multiply ``cfg``'s model widths (:data:`WIDTH_KEYS`) by the integer ``factor``: about ``factor^2`` times the
    parameters of a convolutional model (widths in and out of each layer both grow), alike for every model matched
    to ConvNet's budget; about ``factor`` for an MLP whose input layer dominates. A model whose configuration sets no
    width: one line."""
    if not isinstance(factor, int) or isinstance(factor, bool) or factor < 1:
        raise ConfigError(f"--width-factor must be an integer >= 1, got {factor!r}")
    keys = [k for k in WIDTH_KEYS if k in cfg.model_hparams]
    if not keys:
        raise ConfigError(f"--width-factor: model {cfg.model!r} at preset {cfg.preset!r} of {cfg.benchmark!r} sets "
                          f"none of {', '.join(WIDTH_KEYS)} in its model_hparams, so there is no width to scale")
    for key in keys:
        cfg.model_hparams[key] = int(cfg.model_hparams[key]) * factor


def _patience(value: Any, name: str, preset: str) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ConfigError(f"benchmarks/{name}/benchmark.yaml preset {preset!r}: early_stopping_patience must be an "
                          f"integer >= 1 (epochs without improvement), got {value!r}")
    return value


def benchmark_models(name: str, preset: str | None = None) -> list[str]:
    """The models ``symbench bench <name>`` runs, in order: the ``models:`` list of ``benchmarks/<name>/benchmark.yaml``
    (a preset's own ``models:`` replaces it at that preset), then the installed plug-ins that declare ``name``
    (:func:`symbench.models.declared`). A missing or empty list, a name that is not a model, or one listed twice is
    a :class:`ConfigError` naming the file and key."""
    bench = load_benchmark(name)
    where, listed = f"benchmarks/{name}/benchmark.yaml", bench.get("models")
    section = (bench.get("presets") or {}).get(preset)
    if isinstance(section, dict) and "models" in section:
        where, listed = f"{where} preset {preset!r}", section["models"]
    if not isinstance(listed, list) or not listed or not all(isinstance(m, str) for m in listed):
        raise ConfigError(f"{where}: 'models' must be a non-empty list of model names (symbench models lists them)")
    known = models.available()
    for i, m in enumerate(listed):
        if m not in known:
            raise ConfigError(f"{where}: models lists unknown model {m!r}; available models: {', '.join(known)}")
        if m in listed[:i]:
            raise ConfigError(f"{where}: models lists {m!r} twice")
    return [*listed, *(m for m in models.declared(name) if m not in listed)]


def model_benchmarks(model: str) -> list[str]:
    """The leaderboard benchmarks whose model list (:func:`benchmark_models`) has ``model``."""
    return [b for b in available_benchmarks() if model in benchmark_models(b)]


def seeds_of(name: str, preset: str) -> list[int]:
    bench = load_benchmark(name)
    return list(bench["presets"].get(preset, {}).get("seeds", bench.get("seeds", [0])))


def to_overrides(params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"model.lr": 1e-3, "data.batch_size": 16}`` -> ``{"module": {"lr": 1e-3}, "data": {"batch_size": 16}}``."""
    from datamodules.base import ForecastDataModule
    from symbench.forecast import ForecastModule

    sections: dict[str, dict[str, Any]] = {"data": {}, "module": {}, "model_hparams": {}, "trainer": {}}
    module_args = set(inspect.signature(ForecastModule.__init__).parameters) - {"self", "model"}
    data_args = set(inspect.signature(ForecastDataModule.__init__).parameters) - {"self"}
    for key, value in params.items():
        head, _, rest = key.partition(".")
        if head == "model" and rest.startswith("model_hparams."):
            sections["model_hparams"][rest.split(".", 1)[1]] = value
        elif head == "model" and rest in module_args:
            sections["module"][rest] = value
        elif head == "data" and rest.removeprefix("init_args.") in data_args:
            sections["data"][rest.removeprefix("init_args.")] = value
        elif head == "trainer" and rest and "." not in rest:
            sections["trainer"][rest] = value
        else:
            raise ConfigError(f"sweep key {key!r} names no argument; use model.<{'|'.join(sorted(module_args))}>, "
                              f"model.model_hparams.<name>, data.<datamodule argument> or trainer.<argument>")
    return sections
