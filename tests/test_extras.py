"""A missing optional extra (Dedalus, PhiFlow, fluidsim) ends a command with one line naming the pip install."""

from __future__ import annotations

import importlib.metadata
import sys

import pytest

from symbench import cli, extras

# extra -> (dataset whose generator needs it, top-level modules it installs, distributions it installs)
GENERATORS = {
    "rbc": ("rbc", ("dedalus",), ("dedalus",)),
    "smoke": ("smoke-rotation", ("phi", "phiml"), ("phiflow",)),
    "turb3d": ("turb3d-isotropic", ("fluidsim", "fluidfft", "pyfftw"), ("fluidsim", "fluidfft", "pyfftw")),
}


def uninstall(monkeypatch: pytest.MonkeyPatch, modules: tuple[str, ...], distributions: tuple[str, ...]) -> None:
    """Make ``modules`` unimportable and ``distributions`` unknown to importlib.metadata for this test only."""
    for name in list(sys.modules):
        if name.split(".")[0] in modules:
            monkeypatch.delitem(sys.modules, name)
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)  # `import name` now raises ModuleNotFoundError
    installed = importlib.metadata.version

    def version(distribution: str) -> str:
        if distribution in distributions:
            raise importlib.metadata.PackageNotFoundError(distribution)
        return installed(distribution)

    monkeypatch.setattr(importlib.metadata, "version", version)


@pytest.mark.parametrize("extra", sorted(GENERATORS))
def test_generating_without_the_extra_names_the_pip_install(extra, monkeypatch, tmp_path, capsys):
    dataset, modules, distributions = GENERATORS[extra]
    uninstall(monkeypatch, modules, distributions)
    status = cli.main(["data", "generate", dataset, "--preset", "tiny", "--root", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(err) == 1 and err[0].startswith("symbench: error: ")
    assert err[0].endswith(f"pip install 'symbench[{extra}]'")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # nothing half-written


def test_require_names_the_missing_module_and_its_extra(monkeypatch, tmp_path):
    uninstall(monkeypatch, ("phi",), ())
    with pytest.raises(extras.MissingExtra, match=r"^'phi\.flow' is not installed.*: pip install 'symbench\[smoke\]'$"):
        extras.require("phi.flow", "smoke")
    (tmp_path / "solver_front.py").write_text("import solver_core_absent\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(extras.MissingExtra, match=r"^'solver_core_absent' \(needed by 'solver_front'\) is not inst"):
        extras.require("solver_front", "turb3d")
    assert extras.require("json", "smoke").dumps([1]) == "[1]"  # installed modules are returned as imported
    with pytest.raises(ValueError, match="unknown extra 'cfd'"):
        extras.require("json", "cfd")
