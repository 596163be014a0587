"""What a symmetry costs: training-step time of each Equ variant against two plain baselines measured in the same run.

    python benchmarks/symmetry_cost.py --size 32 --width 8 --batch 16 --frames 10 --out results/speed
    python benchmarks/symmetry_cost.py --backbones unet --size 64 --width 64 --frames 25 --out results/speed \
        --name symmetry_cost_unet_paper    # the paper's 6.2 M-parameter U-net (Table 6's size)

(a) **equal parameters**: the plain backbone at the same ``width`` (every variant is parameter-matched to it within
    10 %), the comparison of the ICLR 2021 paper's Table 6 (1.7x, 1.8x, 4.7x, 52.7x for UM, Mag, Rot, Scale);
(b) **equal arithmetic**: a plain backbone doing the same convolution work, which isolates the symmetry machinery
    itself: for EquUM / EquMag the same plain model (their convolutions are the plain ones); for EquRot the plain
    width whose channel counts equal the regular-representation channels (``N`` x fields); for EquScal the plain
    model on ``n_scales`` times the batch (one grouped convolution runs every kernel scale on every sample).

A training step is forward + MSE backward + Adam on a random batch; rounds are interleaved (every model once per
round, the order rotating) after warm-up rounds, and the median is reported, so machine noise hits all alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import train_step_seconds  # noqa: E402  (the one timing routine, shared with speed.py)

from symbench.fields import FieldLayout  # noqa: E402
from symbench.models import build  # noqa: E402
from symbench.results import atomic_write_text  # noqa: E402

VARIANTS = ("um", "mag", "rot", "scale")
TARGETS_A = {"um": 1.2, "mag": 1.2, "rot": 4.0, "scale": 10.0}  # issue targets, equal parameters
TARGET_B = 1.3  # equal arithmetic
PAPER_A = {"um": 1.7, "mag": 1.8, "rot": 4.7, "scale": 52.7}  # ICLR 2021 Table 6


@dataclass
class Cost:
    backbone: str
    variant: str
    params: int
    plain_params: int
    equal_arithmetic: str
    variant_ms: float
    plain_ms: float
    arithmetic_ms: float

    @property
    def ratio_params(self) -> float:
        return self.variant_ms / self.plain_ms

    @property
    def ratio_arithmetic(self) -> float:
        return self.variant_ms / self.arithmetic_ms


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def equal_arithmetic_width(backbone: str, model: nn.Module, width: int) -> int:
    """Plain width whose widest layer has as many channels as the EquRot model's widest regular layer."""
    if backbone == "resnet":
        widest = model.fields[-1]  # the 8w blocks
    else:
        widest = model.fields[3]  # the 8w bottleneck
    plain = model.group_order * widest / 8
    return max(4, 4 * round(plain / 4)) if backbone == "unet" else max(1, round(plain))


def measure(args: argparse.Namespace) -> list[Cost]:
    layout = FieldLayout.of("velocity:vector")
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.frames, layout.channels, args.size, args.size)
    target = torch.randn(args.batch, layout.channels, args.size, args.size)
    models: dict[str, nn.Module] = {}
    steps: dict[str, tuple[str, torch.Tensor, torch.Tensor]] = {}  # timed entry -> (model key, input, target)
    described: dict[tuple[str, str], tuple[str, str]] = {}  # (backbone, variant) -> (variant entry, arithmetic entry)
    for backbone in args.backbones:
        models[backbone] = build(backbone, in_frames=args.frames, layout=layout, width=args.width)
        steps[backbone] = (backbone, x, target)
        for v in args.variants:
            hp = {"group_order": args.group_order} if v == "rot" else {}
            key = f"equ_{v}_{backbone}"
            models[key] = build(key, in_frames=args.frames, layout=layout, width=args.width, **hp)
            steps[key] = (key, x, target)
            ref = backbone
            if v == "rot":
                w = equal_arithmetic_width(backbone, models[key], args.width)
                ref = f"{backbone} width {w}"
                models[ref] = build(backbone, in_frames=args.frames, layout=layout, width=w)
                steps[ref] = (ref, x, target)
            elif v == "scale":
                n = len(models[key].scales)
                ref = f"{backbone} on {n}x batch"
                steps[ref] = (backbone, x.repeat(n, 1, 1, 1, 1), target.repeat(n, 1, 1, 1))
            described[(backbone, v)] = (key, ref)
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-3) for k, m in models.items()}
    times: dict[str, list[float]] = {k: [] for k in steps}
    names = list(steps)
    for r in range(args.warmup + args.repeats):
        for k in names[r % len(names):] + names[: r % len(names)]:
            model_key, inp, tgt = steps[k]
            t = train_step_seconds(models[model_key], opts[model_key], inp, tgt)
            if r >= args.warmup:
                times[k].append(t)
        print(f"\rround {r + 1}/{args.warmup + args.repeats}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    return [Cost(b, v, n_params(models[key]), n_params(models[b]), ref, ms[key], ms[b], ms[ref])
            for (b, v), (key, ref) in described.items()]


def markdown(costs: list[Cost], args: argparse.Namespace) -> str:
    lines = [
        "# What a symmetry costs (training step: forward + backward + Adam)", "",
        f"Generated by `python benchmarks/symmetry_cost.py` ({args.threads} CPU threads, torch {torch.__version__}, "
        f"batch {args.batch}, T_in {args.frames}, {args.size}x{args.size} velocity, width {args.width}, "
        f"EquRot C{args.group_order}, median of {args.repeats} interleaved rounds after {args.warmup} warm-up).", "",
        "(a) against the plain backbone of equal parameter count (ICLR 2021 Table 6's comparison); (b) against a plain "
        "backbone doing the same convolution arithmetic.", "",
        "| model | params | plain params | step (ms) | plain (ms) | (a) ratio | target (a) | paper (a) "
        "| equal-arithmetic plain | its step (ms) | (b) ratio | target (b) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for c in costs:
        ok_a = "met" if c.ratio_params <= TARGETS_A[c.variant] else "missed"
        ok_b = "met" if c.ratio_arithmetic <= TARGET_B else "missed"
        lines.append(
            f"| equ_{c.variant}_{c.backbone} | {c.params:,} | {c.plain_params:,} | {c.variant_ms:.1f} | "
            f"{c.plain_ms:.1f} | {c.ratio_params:.2f}x | ≤{TARGETS_A[c.variant]}x ({ok_a}) | {PAPER_A[c.variant]}x | "
            f"{c.equal_arithmetic} | {c.arithmetic_ms:.1f} | {c.ratio_arithmetic:.2f}x | ≤{TARGET_B}x ({ok_b}) |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbones", nargs="+", default=["resnet", "unet"], choices=["resnet", "unet"])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS,
                   help="which Equ variants to time (all four by default)")
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--size", type=int, default=32, help="grid H = W")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--frames", type=int, default=10, help="history length T_in")
    p.add_argument("--group-order", type=int, default=8, help="EquRot's C_N (8 in the paper's code)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=None, help="write <name>.md and <name>.json into this folder")
    p.add_argument("--name", default="symmetry_cost", help="file stem of the written tables")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    costs = measure(args)
    table = markdown(costs, args)
    print(table)
    if args.out is not None:
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        payload = {"settings": settings, "torch": torch.__version__,
                   "results": [{**asdict(c), "ratio_params": c.ratio_params, "ratio_arithmetic": c.ratio_arithmetic}
                               for c in costs]}
        atomic_write_text(args.out / f"{args.name}.md", table)
        atomic_write_text(args.out / f"{args.name}.json", json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.out / f'{args.name}.md'}")


if __name__ == "__main__":
    main()
