"""Imports run one way: maths <- models <- forecast <- config <- bench / sweep <- studies <- cli; no cycles; no study
imports another. Read from the source with ``ast`` (every import, the lazy ones inside functions too)."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Layer of each module, by the longest matching dotted prefix; an import may only go to the same or a lower layer.
LAYERS = {
    "symbench": 0, "symbench.results": 0, "symbench.extras": 0, "symbench.files": 0, "symbench.hardware": 0,
    "symbench.fields": 0, "symbench.symmetry": 0, "symbench.layers": 0, "symbench.metrics": 0, "symbench.stats": 0,
    "symbench.models": 1,
    "symbench.forecast": 2, "symbench.last_checkpoint": 2, "symbench.prediction_artifacts": 2,
    "symbench.plateau": 2, "symbench.untrained": 2, "symbench.divergence": 2, "symbench.provenance": 2,
    "symbench.config": 3,
    "symbench.run_config_file": 4, "symbench.data_options": 4, "symbench.export": 4,
    "symbench.bench": 4, "symbench.sweep": 4, "symbench.conformance": 4, "symbench.model_listing": 4,
    "symbench.leaderboard": 4, "symbench.plots": 4,
    "symbench.studies": 5,
    "symbench.cli": 6, "symbench.lightning_cli": 6,
}
STUDIES = "symbench.studies"
STUDY_SHARED = {"symbench.studies", "symbench.studies.common", "symbench.studies.one_step"}  # what every study may import


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def symbench_imports(path: Path) -> set[str]:
    """The ``symbench.*`` modules ``path`` imports (``from symbench import models`` counts as ``symbench.models``)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "symbench"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] != "symbench":
                continue
            for alias in node.names:  # a submodule imported by name, else the module itself
                sub = f"{base}.{alias.name}"
                out.add(sub if _exists(sub) else base)
    return out


def _exists(name: str) -> bool:
    path = SRC.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def layer(name: str) -> int:
    key = max((k for k in LAYERS if name == k or name.startswith(k + ".")), key=len, default=None)
    assert key is not None, f"{name} has no layer in tests/test_layering.py LAYERS; add it"
    return LAYERS[key]


def study_of(name: str) -> str | None:
    """``symbench.studies.nbody.model`` -> ``symbench.studies.nbody``; shared study modules -> None."""
    if not name.startswith(STUDIES + ".") or name in STUDY_SHARED:
        return None
    return ".".join(name.split(".")[:3])


@functools.lru_cache(maxsize=1)
def import_graph() -> dict[str, set[str]]:
    graph = {module_name(p): symbench_imports(p) for p in sorted((SRC / "symbench").rglob("*.py"))}
    return {m: {d for d in deps if d != m and d != "symbench"} for m, deps in graph.items()}


def check_direction(graph: dict[str, set[str]]) -> list[str]:
    return [f"{m} (layer {layer(m)}) imports {d} (layer {layer(d)})"
            for m, deps in graph.items() for d in sorted(deps) if layer(d) > layer(m)]


def check_studies(graph: dict[str, set[str]]) -> list[str]:
    return [f"study {m} imports study {d}" for m, deps in graph.items() for d in sorted(deps)
            if study_of(m) and study_of(d) and study_of(m) != study_of(d)]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (module names, first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (cycle := visit(d)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (cycle := visit(m)):
            return cycle
    return None


def test_imports_run_one_way() -> None:
    assert check_direction(import_graph()) == []


def test_no_import_cycle() -> None:
    assert find_cycle(import_graph()) is None


def test_no_study_imports_another() -> None:
    assert check_studies(import_graph()) == []


def test_checks_catch_planted_violations() -> None:
    """The checks themselves: the old bench <-> sweep cycle, maths importing a model, one study importing another."""
    graph = {"symbench.bench": {"symbench.sweep.space"}, "symbench.sweep.space": {"symbench.bench"}}
    assert find_cycle(graph) == ["symbench.bench", "symbench.sweep.space", "symbench.bench"]
    assert check_direction({"symbench.layers.conv": {"symbench.models.unet"}}) != []
    assert check_studies({"symbench.studies.sr3d.run": {"symbench.studies.discovery.model"}}) != []
    assert check_studies({"symbench.studies.sr3d.run": {"symbench.studies.common"}}) == []
