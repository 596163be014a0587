"""Model speed benchmark: median train-step (forward + backward + Adam) and eval-forward time per registry model.

    python benchmarks/speed.py --models resnet unet --width 16 --size 64 --batch 8 --frames 10 --repeats 10

Models are timed interleaved (one train step and one eval forward of each model per round, the model order rotating
every round) after warm-up rounds, on a fixed number of CPU threads, so that machine noise hits all models alike.
Ratios are taken to the reference model (``resnet``) measured in the same run; it is added when not listed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.models import available, build, spec


@dataclass
class Timing:
    model: str
    family: str
    params: int
    train_ms: float
    eval_ms: float
    train_ratio: float = float("nan")
    eval_ratio: float = float("nan")
    train_rounds_ms: list[float] = field(default_factory=list)
    eval_rounds_ms: list[float] = field(default_factory=list)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=available(), help="registry names (default: all)")
    p.add_argument("--reference", default="resnet", help="model the ratios are taken to (always measured)")
    p.add_argument("--width", type=int, default=16, help="'width' hyperparameter passed to every model")
    p.add_argument("--size", type=int, default=64, help="grid H = W")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--frames", type=int, default=10, help="history length T_in")
    p.add_argument("--fields", nargs="+", default=["velocity:vector"], help="field specs, e.g. velocity:vector")
    p.add_argument("--repeats", type=int, default=10, help="timed rounds")
    p.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    args = p.parse_args(argv)
    unknown = [m for m in args.models + [args.reference] if m not in available()]
    if unknown:
        p.error(f"unknown model(s) {unknown}; available: {', '.join(available())}")
    if args.reference not in args.models:
        args.models = [args.reference, *args.models]
    return args


def train_step_seconds(model: nn.Module, opt: torch.optim.Optimizer, x: Tensor, target: Tensor) -> float:
    model.train()
    start = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    nn.functional.mse_loss(model(x), target).backward()
    opt.step()
    return time.perf_counter() - start


def eval_seconds(model: nn.Module, x: Tensor) -> float:
    model.eval()
    with torch.inference_mode():
        start = time.perf_counter()
        model(x)
        return time.perf_counter() - start


def measure(args: argparse.Namespace) -> list[Timing]:
    layout = FieldLayout.of(*args.fields)
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.frames, layout.channels, args.size, args.size)
    target = torch.randn(args.batch, layout.channels, args.size, args.size)
    models = {n: build(n, in_frames=args.frames, layout=layout, width=args.width) for n in args.models}
    opts = {n: torch.optim.Adam(m.parameters(), lr=1e-3) for n, m in models.items()}
    train: dict[str, list[float]] = {n: [] for n in models}
    evals: dict[str, list[float]] = {n: [] for n in models}
    names = list(models)
    for r in range(args.warmup + args.repeats):
        for n in names[r % len(names):] + names[: r % len(names)]:
            t_train = train_step_seconds(models[n], opts[n], x, target)
            t_eval = eval_seconds(models[n], x)
            if r >= args.warmup:
                train[n].append(t_train)
                evals[n].append(t_eval)
    rows = [Timing(n, spec(n).family, sum(p.numel() for p in models[n].parameters()),
                   1e3 * statistics.median(train[n]), 1e3 * statistics.median(evals[n]),
                   train_rounds_ms=[1e3 * t for t in train[n]], eval_rounds_ms=[1e3 * t for t in evals[n]])
            for n in names]
    ref = next(t for t in rows if t.model == args.reference)
    for t in rows:
        t.train_ratio, t.eval_ratio = t.train_ms / ref.train_ms, t.eval_ms / ref.eval_ms
    return rows


def markdown(rows: list[Timing], reference: str) -> str:
    lines = [f"| model | family | params | train step (ms) | eval forward (ms) | train / {reference} "
             f"| eval / {reference} |", "|---|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {t.model} | {t.family} | {t.params:,} | {t.train_ms:.1f} | {t.eval_ms:.1f} | "
              f"{t.train_ratio:.2f} | {t.eval_ratio:.2f} |" for t in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    settings["torch"] = torch.__version__
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, T_in {args.frames}, "
          f"{args.size}x{args.size}, fields {' '.join(args.fields)}, width {args.width}, "
          f"median of {args.repeats} after {args.warmup} warm-up rounds")
    rows = measure(args)
    print(markdown(rows, args.reference))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"settings": settings, "results": [asdict(t) for t in rows]}, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
