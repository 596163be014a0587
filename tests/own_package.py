"""A model package outside symbench, written by the tests into a directory: ``ownmodels`` with an exact C4 model,
a plain CNN that claims C4, factories with a wrong signature and a wrong output shape, and a ``*.dist-info`` whose
``entry_points.txt`` declares ``own_c4`` in the ``symbench.models`` group (found by ``importlib.metadata`` on
``sys.path``, no installation needed)."""

from __future__ import annotations

import textwrap
from pathlib import Path

NETS = '''
"""Models with symbench's factory contract: (in_frames, layout, **hparams) -> (B, T, C, H, W) -> (B, C, H, W)."""
import torch
from torch import nn

from symbench.symmetry import rot90


class PlainCNN(nn.Module):
    """two 3x3 convolutions over the stacked history"""

    family = "plain"
    symmetries = ("C4",)  # a false claim: check-model must catch it

    def __init__(self, in_frames, layout, width=8):
        super().__init__()
        c = layout.channels
        self.net = nn.Sequential(nn.Conv2d(in_frames * c, width, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(width, c, 3, padding=1))

    def forward(self, x):
        return self.net(x.flatten(1, 2))


class C4Net(nn.Module):
    """PlainCNN averaged over the four quarter turns: g^-1 h(g x) summed over C4 (exactly C4-equivariant)"""

    family = "equivariant"
    symmetries = ("C4",)

    def __init__(self, in_frames, layout, width=8):
        super().__init__()
        self.layout, self.inner = layout, PlainCNN(in_frames, layout, width)

    def forward(self, x):
        return sum(rot90(self.inner(rot90(x, self.layout, k)), self.layout, -k) for k in range(4)) / 4


def wrong_signature(layout):
    return PlainCNN(1, layout)


class WrongShape(PlainCNN):
    def forward(self, x):
        return super().forward(x)[:, :1]
'''

PLUGIN = '''
from symbench.models import ModelSpec

OWN_C4 = ModelSpec("own_c4", "ownmodels.nets:C4Net", "equivariant", "PlainCNN averaged over C4 (a plug-in)",
                   symmetries=("C4",), benchmarks=("rbc",))
'''


def write_distribution(root: Path, name: str, version: str, entry_points: dict[str, str]) -> Path:
    """``root/<name>-<version>.dist-info`` with METADATA, top_level.txt and ``[symbench.models]`` entry points."""
    info = root / f"{name}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "top_level.txt").write_text(f"{name}\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[symbench.models]\n{lines}")
    return info


def write_package(root: Path, version: str = "0.3.0") -> Path:
    """The ``ownmodels`` package and its distribution metadata under ``root`` (put ``root`` on ``sys.path``)."""
    pkg = root / "ownmodels"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(textwrap.dedent(NETS))
    (pkg / "plugin.py").write_text(textwrap.dedent(PLUGIN))
    write_distribution(root, "ownmodels", version, {"own_c4": "ownmodels.plugin:OWN_C4"})
    return root
