"""The paper studies outside the leaderboard benchmarks (N-body, digits, 3D super-resolution, symmetry discovery,
levels of equivariance, strength of the breaking, the alpha sweep). Each is its own package or module; what they
share is in :mod:`symbench.studies.common` (and, for the one-step studies, :mod:`symbench.studies.one_step`); no
study imports another.

Every study module is a :class:`StudyModule`: ``add_arguments(parser)`` declares its command-line options and
``run(args)`` runs it and prints what it wrote. :data:`STUDIES` names them for ``cli.py``, which registers them in one
loop and imports a study only when its command runs (a study may pull in escnn or Lightning).
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass
from typing import Protocol


class StudyModule(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> None: ...


@dataclass(frozen=True)
class Study:
    """A ``symbench <command>`` backed by the :class:`StudyModule` ``module``."""

    command: str
    module: str
    help: str

    def load(self) -> StudyModule:
        return importlib.import_module(self.module)  # type: ignore[return-value]


STUDIES: tuple[Study, ...] = (
    Study("alpha-sweep", "symbench.studies.alpha_sweep",
          "ICML 2022 Fig. 7: RMSE of a relaxed model against its penalty weight alpha "
          "(results/<benchmark>/alpha_sweep_*)"),
    Study("levels", "symbench.studies.levels",
          "ICML 2022 sec. 5.2: model vs data equivariance error on smoke datasets with graded C4 symmetry breaking "
          "(generates the data if missing)"),
    Study("strength", "symbench.studies.strength",
          "issue 22 item 3: RMSE of ConvNet, strict, RGroup and RSteer against the strength of the symmetry breaking "
          "(rotation and translation smoke sets, breaking the history reveals or not; generates the data if missing; "
          "<results>/strength/)"),
    Study("nbody", "symbench.studies.nbody.run",
          "GNN vs EGNN on charged N-body dynamics in R^n (when-equivariance paper sec. 4.1, Fig. 1; writes "
          "<results>/nbody/)"),
    Study("digits", "symbench.studies.digits.run",
          "test error vs training size of CNNs equivariant to subgroups of O(2) on rotated / flipped-rotated MNIST "
          "(sec. 4.2, Fig. 2; <results>/digits/)"),
    Study("sr3d", "symbench.studies.sr3d.run",
          "3D turbulence 4x super-resolution: Trilinear, Conv, Equiv (O_h group conv) and R-Equiv (relaxed) on "
          "isotropic and sheared flow (the relaxed octahedral slides' table; generates the data if missing; "
          "<results>/sr3d/)"),
    Study("discover", "symbench.studies.discovery.run",
          "symmetry discovery: train a relaxed O_h group conv on data with a known subgroup symmetry and read the "
          "subgroup off its relaxation weights (writes <results>/symmetry_discovery/)"),
)
