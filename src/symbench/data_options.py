"""``symbench bench <benchmark> --data.KEY VALUE [VALUE ...]``: datamodule options from the command line, and the
leaderboard a user's own files get.

Each value is read as YAML (``3`` -> int, ``'{u: UWND, v: VWND}'`` -> a mapping, ``[a, b]`` -> a list), text that is
not YAML stays text (``*.nc``), ``path`` values are always text; several values after one key form a list
(``--data.path a.nc b.nc``). Keys must be
arguments of the benchmark's datamodule.

A run on a user's files (a ``path`` option) writes its rows to its own leaderboard, ``<results>/<benchmark>-<id>/``,
where ``id`` is :func:`datamodules.user_files.dataset_id` of the files (names and bytes) and of the options that choose
what is read from them: the same data give the same board wherever they lie, other data never mix with the preset's
rows.
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

import yaml

import datamodules
from datamodules.base import ForecastDataModule
from datamodules.user_files import dataset_id, describe_names

TEXT_OPTIONS = ("path",)  # taken as text, never as YAML (a file may be called 2021 or on)
# The options that change what is read from a user's files (and so the dataset id).
CONTENT_OPTIONS = ("source", "names", "task", "currents", "fields", "piv_format", "depth_index")


def _value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_data_options(tokens: Sequence[str]) -> dict[str, Any]:
    """``["--data.path", "a.nc", "b.nc", "--data.tile=8"]`` -> ``{"path": ["a.nc", "b.nc"], "tile": 8}``.
    Raises ``ValueError`` for a token that is not ``--data.KEY`` or a key without a value."""
    options: dict[str, Any] = {}
    key: str | None = None
    values: list[str] = []

    def close() -> None:
        if key is not None:
            if not values:
                raise ValueError(f"--data.{key} needs a value")
            read = str if key in TEXT_OPTIONS else _value
            options[key] = read(values[0]) if len(values) == 1 else [read(v) for v in values]

    for token in tokens:
        if token.startswith("--data."):
            close()
            key, _, inline = token[len("--data."):].partition("=")
            values = [inline] if inline else []
            if not key:
                raise ValueError(f"{token}: name the datamodule option, e.g. --data.path FILE")
        elif key is None:
            raise ValueError(f"unrecognized argument {token!r} (datamodule options are --data.KEY VALUE)")
        else:
            values.append(token)
    close()
    return options


def split_data_tokens(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separate the ``--data.KEY VALUE ...`` groups (a group runs to the next ``--`` token) from the other
    arguments."""
    rest: list[str] = []
    data: list[str] = []
    inside = False
    for token in argv:
        if token.startswith("--data."):
            inside = True
        elif token.startswith("--"):
            inside = False
        (data if inside else rest).append(token)
    return rest, data


def check_data_options(dataset: str, options: dict[str, Any]) -> None:
    """``ValueError`` naming the options the datamodule of ``dataset`` does not take (and the ones it does)."""
    cls = datamodules.entry(dataset).datamodule_class()
    accepted = set()
    for c in (cls, ForecastDataModule):
        accepted |= {n for n, p in inspect.signature(c.__init__).parameters.items()
                     if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(f"{cls.__name__} has no option {', '.join('--data.' + k for k in unknown)}; its options: "
                         f"{', '.join(sorted(accepted))}")


def board_name(benchmark: str, data: dict[str, Any]) -> str:
    """``benchmark`` for the preset's data; ``<benchmark>-<dataset id>`` for a user's files (a ``path`` option)."""
    if data.get("path") is None:
        return benchmark
    choices = [describe_names(data[k]) if k == "names" and k in data else data.get(k) for k in CONTENT_OPTIONS]
    return f"{benchmark}-{dataset_id(data['path'], *choices)}"
