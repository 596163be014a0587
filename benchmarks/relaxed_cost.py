"""What relaxing a group or steerable convolution costs: training-step time of the relaxed models of ICML 2022
(RGroup sec. 3.1; RSteer / RSteerTR sec. 3.2, eq. 7-9) against the strict network of the same layer types and
channel counts, and against the plain ConvNet of equal parameter count.

    python benchmarks/relaxed_cost.py --size 32 --width 16 --batch 8 --frames 10 --banks 2 --out results/speed

For each relaxed model, its ``strict`` twin is the same class with ``relaxed=False`` and the same hidden counts:
for ``rgroup`` the C4 group convolution on the same regular fields / the scale group correlation over the same
levels / plain convolutions (``L = 1``, no relaxation weights); for ``rsteer`` the strict steerable convolution on
escnn's basis (eq. 6, one weight per basis element) with the same field types; for ``rsteer_tr`` the same strict
steerable network (no translation part); for ``rsteer_scale`` / ``rsteer_ts`` the SESN network (one weight per
Hermite-Gaussian function) with the same channels per level. So the ratio isolates the relaxation: the kernel expansion for rgroup
(rotation, scaling), rsteer and rsteer_scale (target <= 1.3x), the ``L``- or ``R``-fold convolution for translation and the TR
combination. ``escnn`` is escnn's own ``R2Conv`` network with RSteer's field types, to show that the strict
reference is as fast as the library's. ``convnet`` = :class:`~symbench.models.conv_net.ConvNet` at the same
``width`` (every relaxed model is sized to its parameter count).

A training step is forward + MSE (+ ``alpha * regularization_loss()`` where defined) backward + Adam on a random
batch; rounds are interleaved (every model once per round, the order rotating) after warm-up rounds, and the median
is reported, so machine noise hits all models alike. Writes ``relaxed_cost.csv`` and ``relaxed_cost.md``
atomically into ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.models.conv_net import ConvNet
from symbench.layers import stack_frames
from symbench.models.rgroup import RGroupNet
from symbench.models.rsteer import RSteerNet
from symbench.models.sesn import ScaleSteerableNet
from symbench.models.smoke_families import SteerableFamily, equivariant_stack
from symbench.results import atomic_write, atomic_write_text

SYMMETRIES = ("rotation", "scaling", "translation")
# The briefs' targets (relaxed / strict); translation and the TR / TS combinations have none (L- or R-fold conv).
TARGET_STRICT = {("rotation", "rgroup"): 1.3, ("scaling", "rgroup"): 1.3, ("rotation", "rsteer"): 1.3,
                 ("scaling", "rsteer_scale"): 1.3}
ALPHA = 1e-4
RESULTS = Path(__file__).resolve().parents[1] / "results" / "speed"


@dataclass
class Cost:
    symmetry: str
    model: str
    hidden: str
    params: int
    step_ms: float
    ratio_strict: float
    ratio_convnet: float


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def train_step_seconds(model: nn.Module, opt: torch.optim.Optimizer, x: Tensor, target: Tensor) -> float:
    """One timed training step; the penalty is added linearly, as the Lightning module does."""
    model.train()
    start = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss = nn.functional.mse_loss(model(x), target)
    if hasattr(model, "regularization_loss"):
        loss = loss + ALPHA * model.regularization_loss()
    loss.backward()
    opt.step()
    return time.perf_counter() - start


def relaxed_models(args: argparse.Namespace) -> dict[tuple[str, str], tuple[Callable[..., nn.Module], dict]]:
    """``(symmetry, name) -> (class, options)`` of every relaxed model measured; the strict twin drops the
    options (``banks``, ``ranks``) and sets ``relaxed=False``."""
    banks = dict(banks=args.banks)
    return {("rotation", "rgroup"): (RGroupNet, banks), ("rotation", "rsteer"): (RSteerNet, {}),
            ("rotation", "rsteer_tr"): (RSteerNet, dict(ranks=2)),
            ("scaling", "rgroup"): (RGroupNet, banks),
            ("scaling", "rsteer_scale"): (ScaleSteerableNet, dict(relaxed=True)),
            ("scaling", "rsteer_ts"): (ScaleSteerableNet, dict(relaxed=True, ranks=2)),
            ("translation", "rgroup"): (RGroupNet, banks)}


class _Stacked(nn.Module):
    """A network on frame-stacked channels, fed the ``(B, T, C, H, W)`` history."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(stack_frames(x))


def build_models(args: argparse.Namespace, layout: FieldLayout) -> dict[tuple[str, str], nn.Module]:
    """``(symmetry, name) -> model`` for every relaxed model, its ``<name> strict`` twin and, for rsteer, escnn's
    ``R2Conv`` network of the same types; plus ``("all", "convnet")``."""
    common = dict(width=args.width, layers=args.layers, kernel_size=args.kernel_size, grid_size=args.size)
    models: dict[tuple[str, str], nn.Module] = {
        ("all", "convnet"): ConvNet(args.frames, layout, width=args.width, layers=args.layers,
                                    kernel_size=args.kernel_size)}
    for (symmetry, name), (cls, options) in relaxed_models(args).items():
        if symmetry not in args.symmetries:
            continue
        # the scale-steerable models keep SESN's kernel (5 x 5); their budget is ConvNet's at their effective size
        sized = {k: v for k, v in common.items() if not (cls is ScaleSteerableNet and k == "kernel_size")}
        relaxed = cls(args.frames, layout, symmetry=symmetry, **options, **sized)
        models[(symmetry, name)] = relaxed
        models[(symmetry, f"{name} strict")] = cls(args.frames, layout, symmetry=symmetry, relaxed=False,
                                                   hidden=relaxed.hidden, **sized)
        if name == "rsteer":
            family = SteerableFamily(args.kernel_size)
            stack = equivariant_stack(family, family.history_type(layout, args.frames), relaxed.hidden, layout)
            models[(symmetry, "rsteer escnn")] = _Stacked(stack)
    return models


def measure(args: argparse.Namespace) -> list[Cost]:
    layout = FieldLayout.of(*args.fields)
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.frames, layout.channels, args.size, args.size)
    target = torch.randn(args.batch, layout.channels, args.size, args.size)
    models = build_models(args, layout)
    opts = {key: torch.optim.Adam(m.parameters(), lr=1e-3) for key, m in models.items()}
    times: dict[tuple[str, str], list[float]] = {key: [] for key in models}
    keys = list(models)
    for r in range(args.warmup + args.repeats):
        for key in keys[r % len(keys):] + keys[: r % len(keys)]:
            t = train_step_seconds(models[key], opts[key], x, target)
            if r >= args.warmup:
                times[key].append(t)
        print(f"\rround {r + 1}/{args.warmup + args.repeats}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    ms = {key: 1e3 * statistics.median(v) for key, v in times.items()}
    plain = ms[("all", "convnet")]
    rows = [Cost("all", "convnet", str(args.width), n_params(models[("all", "convnet")]), plain, float("nan"), 1.0)]
    for (symmetry, name), model in models.items():
        if symmetry == "all":
            continue
        strict = ms[(symmetry, f"{name.split()[0]} strict")]
        hidden = " ".join(map(str, getattr(model, "hidden", ()))) or "as rsteer"
        rows.append(Cost(symmetry, name, hidden, n_params(model), ms[(symmetry, name)], ms[(symmetry, name)] / strict,
                         ms[(symmetry, name)] / plain))
    return rows


def markdown(rows: list[Cost], args: argparse.Namespace) -> str:
    lines = [
        "# What relaxing a group or steerable convolution costs (training step: forward + backward + Adam)", "",
        f"Generated by `python benchmarks/relaxed_cost.py` ({args.threads} CPU threads, torch {torch.__version__}, "
        f"batch {args.batch}, T_in {args.frames}, {args.size}x{args.size} {' '.join(args.fields)}, width "
        f"{args.width}, {args.layers} layers, k {args.kernel_size}, L = {args.banks} banks, median of "
        f"{args.repeats} interleaved rounds after {args.warmup} warm-up).", "",
        "`<model> strict`: the same network without relaxation (one bank and no relaxation weights for rgroup; one "
        "weight per basis element and no translation part for the rsteer models), same layer types and hidden "
        "counts; `rsteer escnn`: escnn's `R2Conv` network of RSteer's types; `convnet`: the plain ConvNet of "
        "(within 10 %) equal parameter count.", "",
        "| symmetry | model | hidden | params | step (ms) | / strict | target | / convnet |",
        "|---|---|---|---:|---:|---:|---|---:|",
    ]
    for c in rows:
        target = TARGET_STRICT.get((c.symmetry, c.model))
        verdict = f"≤{target}x ({'met' if c.ratio_strict <= target else 'missed'})" if target else ""
        strict = "" if c.ratio_strict != c.ratio_strict else f"{c.ratio_strict:.2f}x"
        lines.append(f"| {c.symmetry} | {c.model} | {c.hidden} | {c.params:,} | {c.step_ms:.1f} | {strict} | "
                     f"{verdict} | {c.ratio_convnet:.2f}x |")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[Cost], args: argparse.Namespace) -> str:
    buf = io.StringIO()
    settings = {k: v for k, v in vars(args).items() if k in ("size", "width", "batch", "frames", "banks", "layers",
                                                             "kernel_size", "threads", "repeats", "warmup")}
    writer = csv.DictWriter(buf, fieldnames=[f.name for f in fields(Cost)] + list(settings) + ["torch"],
                            lineterminator="\n")
    writer.writeheader()
    for c in rows:
        writer.writerow({**asdict(c), **settings, "torch": torch.__version__})
    return buf.getvalue()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=32, help="grid H = W (also RGroup's grid_size)")
    p.add_argument("--width", type=int, default=16, help="ConvNet width; RGroup is parameter-matched to it")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--frames", type=int, default=10, help="history length T_in")
    p.add_argument("--banks", type=int, default=2, help="L, the number of filter banks")
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--kernel-size", type=int, default=3)
    p.add_argument("--fields", nargs="+", default=["velocity:vector"], help="field specs, e.g. velocity:vector")
    p.add_argument("--symmetries", nargs="+", default=list(SYMMETRIES), choices=SYMMETRIES)
    p.add_argument("--repeats", type=int, default=10, help="timed rounds")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--out", type=Path, default=RESULTS, help="write relaxed_cost.csv and relaxed_cost.md here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = measure(args)
    table = markdown(rows, args)
    print(table)
    text = to_csv(rows, args)
    atomic_write(args.out / "relaxed_cost.csv", lambda f: f.write(text.encode("utf-8")))
    atomic_write_text(args.out / "relaxed_cost.md", table)
    print(f"wrote {args.out / 'relaxed_cost.csv'} and {args.out / 'relaxed_cost.md'}")


if __name__ == "__main__":
    main()
