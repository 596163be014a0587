"""``symbench models``: every model symbench can run (registry and installed plug-ins), one table row each.

Columns: name, family, parameter count at a preset (the model built with the preset's hyperparameters for the
layout of its first benchmark's data, or of ``--benchmark``; ``-`` where those data are not under the data root),
benchmarks and source (``symbench``, or the entry point and the distribution declaring it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datamodules
from symbench import models
from symbench.config import benchmark_models, model_benchmarks, resolve


def model_rows(benchmark: str | None = None, preset: str = "tiny", root: str | Path = "data") -> list[dict[str, Any]]:
    """One dict per model of ``benchmark`` (every model without one)."""
    layouts: dict[str, Any] = {}
    rows = []
    for name in benchmark_models(benchmark) if benchmark else models.available():
        spec = models.spec(name)
        benchmarks = model_benchmarks(name)
        bench = benchmark or next(iter(benchmarks), None)
        params = None
        if bench is not None:
            cfg = resolve(bench, preset, name, 0, root, use_best=False)
            if bench not in layouts:
                try:
                    dm = datamodules.entry(cfg.dataset).datamodule_class()(**cfg.data)
                    layouts[bench] = (dm.in_frames, dm.layout)  # reads the data's field declaration
                except FileNotFoundError:
                    layouts[bench] = None
            if layouts[bench] is not None:
                in_frames, layout = layouts[bench]
                net = models.build(cfg.model, in_frames=in_frames, layout=layout, **cfg.model_hparams)
                params = sum(p.numel() for p in net.parameters())
        rows.append({"name": name, "family": spec.family, "params": params, "benchmarks": benchmarks,
                     "source": models.source(name)})
    return rows


def render(rows: list[dict[str, Any]], preset: str, root: str | Path = "data") -> str:
    lines = [f"| model | family | parameters ({preset}) | benchmarks | source |", "|---|---|---|---|---|"]
    for r in rows:
        params = f"{r['params']:,}" if r["params"] is not None else "-"
        lines.append(f"| {r['name']} | {r['family']} | {params} | {', '.join(r['benchmarks'])} | {r['source']} |")
    if any(r["params"] is None for r in rows):
        lines.append(f"\n-: the data of the benchmark counted on are not under {root} "
                     f"(`symbench data generate <dataset> --preset {preset}` gives the field layout the count needs)")
    return "\n".join(lines)
