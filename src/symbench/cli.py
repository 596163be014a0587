"""The ``symbench`` command line. Each subcommand does one thing and prints what it wrote where.

    symbench data generate <dataset> --preset P [--root DIR]
    symbench fit|test|validate [LightningCLI arguments: -c config.yaml, --model.lr 1e-3, --data.preset tiny, ...]
    symbench bench <benchmark> --preset P [--models M ...] [--seeds S ...]
    symbench sweep <benchmark> --model M [--sampler grid|tpe] [--trials N] [--storage URL] [--workers N]
    symbench leaderboard [--benchmark B ...]
    symbench models [--benchmark B] [--preset P]
    symbench check-model MODEL_OR_package.module:Factory [--benchmark B] [--preset P]
    symbench alpha-sweep <benchmark> --model M [--alphas A ...] --preset P [--seeds S ...]
    symbench levels --preset P [--root DIR] [--models M ...] [--alpha A] [--epochs E] [--data-only]
    symbench nbody --preset P [--root DIR] [--seeds S ...]
    symbench digits --preset P [--tasks T ...] [--groups G ...] [--seeds S ...] [--idx-dir DIR] [--report-only]
    symbench discover [--subgroups C4v D4h C4 Oh] [--steps N] [--seed S] [--results DIR]
    symbench sr3d --preset P [--flows sheared isotropic] [--models M ...] [--seeds S ...] [--report-only]

Bad input (unknown model, dataset, preset or benchmark, missing data, impossible window sizes) ends with one line
``symbench: error: ...`` naming the thing and the fix, and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from symbench.extras import MissingExtra

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")
# Errors that mean bad input: reported as one line, exit status 2 (jsonargparse raises argparse.ArgumentError
# subclasses when exit_on_error is off); a missing optional extra names the `pip install` that adds it.
BAD_INPUT: tuple[type[BaseException], ...] = (KeyError, ValueError, FileNotFoundError, argparse.ArgumentError,
                                              MissingExtra)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="symbench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="generate datasets with real simulators")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    gen = data_sub.add_parser("generate", help="generate (or reuse) a dataset")
    gen.add_argument("dataset")
    gen.add_argument("--preset", default="cpu")
    gen.add_argument("--root", default="data", help="data root directory (default: data)")
    gen.add_argument("--no-progress", action="store_true")

    bench = sub.add_parser("bench", help="train every model on every seed, test on every split, append rows")
    bench.add_argument("benchmark")
    bench.add_argument("--preset", default="cpu")
    bench.add_argument("--models", nargs="+", help="registry names or package.module:Factory references "
                                                   "(default: every model of the benchmark)")
    bench.add_argument("--seeds", nargs="+", type=int, help="seeds (default: the preset's)")
    bench.add_argument("--root", default="data", help="data root directory")
    bench.add_argument("--results", default="results", help="results directory (runs.csv, leaderboard)")
    bench.add_argument("--runs", default="runs", help="checkpoints and logs directory")
    bench.add_argument("--max-epochs", type=int, help="override the preset's number of epochs")
    bench.add_argument("--accelerator", help="override the Trainer accelerator (cpu, gpu, auto)")
    bench.add_argument("--devices", help="override the Trainer devices (e.g. 1, 4, auto)")
    bench.add_argument("--no-progress", action="store_true")
    bench.add_argument("--rerun", action="store_true",
                       help="train (model, seed) pairs again even if runs.csv has rows of the same configuration")

    bench.add_argument("--no-best", action="store_true",
                       help="ignore benchmarks/<benchmark>/best/<model>.yaml written by `symbench sweep`")

    sweep = sub.add_parser("sweep", help="Optuna search over sweeps/<benchmark>/*.yaml, shared by N workers")
    sweep.add_argument("benchmark")
    sweep.add_argument("--model", required=True, help="registry name or package.module:Factory")
    sweep.add_argument("--preset", default="cpu")
    sweep.add_argument("--sampler", choices=("grid", "tpe"), help="default: the sweep file's (grid)")
    sweep.add_argument("--trials", type=int, help="TPE budget (a grid runs each of its points once)")
    sweep.add_argument("--storage", help="database URL (postgresql://...) or journal file path "
                                         "(default: runs/sweeps/<study>/journal.log)")
    sweep.add_argument("--study", help="study name (default: <benchmark>-<preset>-<model>-<sampler>)")
    sweep.add_argument("--workers", type=int, default=1, help="worker processes (one per visible GPU, else CPU)")
    sweep.add_argument("--space", help="search-space YAML (default: the sweeps/<benchmark>/ file covering --model)")
    sweep.add_argument("--pruner", choices=("median", "none"), help="default: the sweep file's")
    sweep.add_argument("--heartbeat", type=float, default=20.0, help="seconds between a worker's heartbeats")
    sweep.add_argument("--grace", type=float, default=90.0,
                       help="seconds without heartbeat after which a running trial is failed and retried")
    sweep.add_argument("--root", default="data", help="data root directory")
    sweep.add_argument("--runs", default="runs", help="checkpoints, logs and the default journal")
    sweep.add_argument("--no-progress", action="store_true")

    listing = sub.add_parser("models", help="list every model (registry and installed plug-ins): family, "
                                            "parameters at a preset, benchmarks, source")
    listing.add_argument("--benchmark", help="only the models of this benchmark (and count parameters on its data)")
    listing.add_argument("--preset", default="tiny", help="preset whose hyperparameters size the models")
    listing.add_argument("--root", default="data", help="data root directory (the data give the field layout)")

    check = sub.add_parser("check-model", help="contract checks and measured equivariance errors of a model "
                                               "(registry name, plug-in or package.module:Factory)")
    check.add_argument("model")
    check.add_argument("--benchmark", default="rbc")
    check.add_argument("--preset", default="tiny")
    check.add_argument("--root", default="data", help="data root directory (generated if missing)")
    check.add_argument("--seed", type=int, default=0)
    check.add_argument("--fraction", type=float, default=0.5,
                       help="an approximate symmetry claim needs an error below this fraction of the plain model's")
    check.add_argument("--no-compile", action="store_true", help="skip the torch.compile (Dynamo) report")
    check.add_argument("--json", help="where to write the report (default: <results>/checks/<benchmark>/<model>.json)")
    check.add_argument("--results", default="results")

    board = sub.add_parser("leaderboard", help="aggregate results/<benchmark>/runs.csv into tables and plots")
    board.add_argument("--benchmark", nargs="+", help="benchmarks (default: every one with rows)")
    board.add_argument("--results", default="results")

    alpha = sub.add_parser("alpha-sweep", help="ICML 2022 Fig. 7: RMSE of a relaxed model against its penalty "
                                                "weight alpha (results/<benchmark>/alpha_sweep_*)")
    alpha.add_argument("benchmark")
    alpha.add_argument("--model", required=True, help="registry name of a model with regularization_loss()")
    alpha.add_argument("--alphas", nargs="+", type=float, help="penalty weights (default: 0 1e-6 ... 1e-2)")
    alpha.add_argument("--preset", default="cpu")
    alpha.add_argument("--seeds", nargs="+", type=int, help="seeds (default: the preset's first)")
    alpha.add_argument("--root", default="data", help="data root directory")
    alpha.add_argument("--results", default="results", help="results directory")
    alpha.add_argument("--runs", default="runs", help="checkpoints and logs directory")
    alpha.add_argument("--no-progress", action="store_true")

    levels = _experiment(sub, "levels", "ICML 2022 sec. 5.2: model vs data equivariance error on smoke datasets "
                                        "with graded C4 symmetry breaking (generates the data if missing)")
    levels.add_argument("--models", nargs="+", help="registry names (default: conv equiv rsteer)")
    levels.add_argument("--alpha", type=float,
                        help="weight of relaxed models' regularization_loss() (default: the preset's, 1e-4)")
    levels.add_argument("--epochs", type=int, help="override the preset's training epochs")
    levels.add_argument("--data-only", action="store_true", help="only generate (or reuse) the datasets")

    nbody = _experiment(sub, "nbody", "GNN vs EGNN on charged N-body dynamics in R^n (when-equivariance paper "
                                      "sec. 4.1, Fig. 1; writes <results>/nbody/)")
    nbody.add_argument("--seeds", nargs="+", type=int, help="seeds (default: the preset's)")

    digits = _experiment(sub, "digits", "test error vs training size of CNNs equivariant to subgroups of O(2) on "
                                        "rotated / flipped-rotated MNIST (sec. 4.2, Fig. 2; <results>/digits/)")
    digits.add_argument("--tasks", nargs="+", help="rotated and/or flipped (default: both)")
    digits.add_argument("--groups", nargs="+", help="subset of e C4 D4 C8 D8 SO2 O2 (default: all)")
    digits.add_argument("--seeds", nargs="+", type=int, help="seeds (default: the preset's)")
    digits.add_argument("--idx-dir", help="a directory of MNIST-format IDX files (train-images-idx3-ubyte[.gz], ...) "
                                          "to use instead of MNIST; outputs are named after it")
    digits.add_argument("--report-only", action="store_true", help="only render the report from the CSVs")

    sr3d = _experiment(sub, "sr3d", "3D turbulence 4x super-resolution: Trilinear, Conv, Equiv (O_h group conv) and "
                                    "R-Equiv (relaxed) on isotropic and sheared flow (the relaxed octahedral "
                                    "slides' table; generates the data if missing; <results>/sr3d/)")
    sr3d.add_argument("--flows", nargs="+", help="sheared and/or isotropic (default: both)")
    sr3d.add_argument("--models", nargs="+", help="subset of trilinear conv equiv r_equiv (default: all)")
    sr3d.add_argument("--seeds", nargs="+", type=int, help="seeds (default: the preset's)")
    sr3d.add_argument("--report-only", action="store_true", help="only render the report from the CSV")

    discover = sub.add_parser("discover", help="symmetry discovery: train a relaxed O_h group conv on data with a "
                                                "known subgroup symmetry and read the subgroup off its relaxation "
                                                "weights (writes <results>/symmetry_discovery/)")
    discover.add_argument("--subgroups", nargs="+", default=["C4v", "D4h", "C4", "Oh"],
                          help="known symmetry of the synthetic data (named subgroups of O_h)")
    discover.add_argument("--steps", type=int, default=200)
    discover.add_argument("--seed", type=int, default=0)
    discover.add_argument("--results", default="results", help="results directory (default: results)")

    for name in LIGHTNING_SUBCOMMANDS:
        sub.add_parser(name, help=f"LightningCLI {name} (-c config.yaml, --model.*, --data.*, --trainer.*)",
                       add_help=False)
    return parser


def _experiment(sub: argparse._SubParsersAction, name: str, help_text: str) -> argparse.ArgumentParser:
    """A subcommand with the options every paper experiment shares: --preset, --root, --results, --no-progress."""
    parser = sub.add_parser(name, help=help_text)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--root", default="data", help="data root directory (default: data)")
    parser.add_argument("--results", default="results", help=f"results directory (writes <results>/{name}/)")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def _bench(args: argparse.Namespace) -> None:
    from symbench.bench import run_benchmark

    trainer = {k: v for k, v in {"max_epochs": args.max_epochs, "accelerator": args.accelerator,
                                 "devices": _devices(args.devices)}.items() if v is not None}
    run_benchmark(args.benchmark, args.preset, args.models, args.seeds, args.root, args.results, args.runs,
                  overrides={"trainer": trainer}, progress=not args.no_progress, rerun=args.rerun,
                  use_best=not args.no_best)


def _sweep(args: argparse.Namespace) -> None:
    from symbench import models
    from symbench.sweep.run import SweepSpec, run_sweep

    model = models.canonical(args.model)  # unknown model -> one line; outside symbench: name@version
    spec = SweepSpec(benchmark=args.benchmark, model=model, preset=args.preset, sampler=args.sampler,
                     trials=args.trials, storage=args.storage, study=args.study, root=args.root, runs=args.runs,
                     space=args.space, pruner=args.pruner, heartbeat=args.heartbeat, grace=args.grace,
                     progress=not args.no_progress)
    run_sweep(spec, workers=args.workers)


def _devices(value: str | None) -> int | str | None:
    return int(value) if value is not None and value.isdigit() else value


def _models(args: argparse.Namespace) -> None:
    from symbench.model_listing import model_rows, render

    print(render(model_rows(args.benchmark, args.preset, args.root), args.preset))


def _check_model(args: argparse.Namespace) -> int:
    from symbench.conformance import check_model, write_json

    report = check_model(args.model, args.benchmark, args.preset, args.root, args.seed, args.fraction,
                         compile_check=not args.no_compile)
    print(report.table())
    path = write_json(report, args.json or Path(args.results) / "checks" / args.benchmark / f"{report.model}.json")
    print(f"wrote {path}")
    if report.failures():
        print(f"symbench: check-model: {report.model}: " + "; ".join(report.failures()), file=sys.stderr)
        return 1
    return 0


def _leaderboard(args: argparse.Namespace) -> None:
    from symbench import models
    from symbench.leaderboard import write_family_tables, write_leaderboard
    from symbench.plots import write_plots

    names = args.benchmark or sorted(p.parent.name for p in Path(args.results).glob("*/runs.csv"))
    if not names:
        raise FileNotFoundError(f"no results/<benchmark>/runs.csv under {args.results}; run `symbench bench` first")
    for name in names:
        for path in write_leaderboard(name, args.results, model_order=models.available()):
            print(f"wrote {path}")
        plots, notes = write_plots(name, args.results, model_order=models.available())
        for line in [f"wrote {path}" for path in plots] + notes:
            print(line)
    for path in write_family_tables(args.results):
        print(f"wrote {path}")


def _alpha_sweep(args: argparse.Namespace) -> None:
    from symbench.alpha_sweep import DEFAULT_ALPHAS, run_alpha_sweep

    for path in run_alpha_sweep(args.benchmark, args.model, args.alphas or DEFAULT_ALPHAS, args.preset, args.seeds,
                                args.root, args.results, args.runs, progress=not args.no_progress):
        print(f"wrote {path}")


def _levels(args: argparse.Namespace) -> None:
    from symbench.levels import DEFAULT_MODELS, run_levels

    run_levels(args.preset, args.root, args.results, args.models or DEFAULT_MODELS, alpha=args.alpha,
               epochs=args.epochs, progress=not args.no_progress, data_only=args.data_only)


def _nbody(args: argparse.Namespace) -> None:
    from datamodules.nbody import PRESETS
    from symbench.nbody import run_nbody

    _check_preset(args.preset, PRESETS)
    run_nbody(args.preset, args.root, args.results, args.seeds, show_progress=not args.no_progress)
    print(f"wrote {Path(args.results) / 'nbody'}")


def _digits(args: argparse.Namespace) -> None:
    from datamodules.digits import PRESETS, TASKS
    from symbench.digits import GROUPS, run_digits, write_report

    _check_preset(args.preset, PRESETS)
    if not args.report_only:
        run_digits(args.preset, args.root, args.results, args.tasks or TASKS, args.groups or GROUPS, args.seeds,
                   show_progress=not args.no_progress, idx_dir=args.idx_dir)
    path = write_report(args.preset, args.results, root=args.root, idx_dir=args.idx_dir)
    if path is None:
        raise FileNotFoundError(f"no digits results for preset {args.preset!r} under {args.results}/digits; "
                                f"run `symbench digits --preset {args.preset}` first")
    print(f"wrote {path}")


def _sr3d(args: argparse.Namespace) -> None:
    from symbench.sr3d import FLOWS, KINDS, TRAINING, run_sr3d, write_report

    _check_preset(args.preset, TRAINING)
    if not args.report_only:
        run_sr3d(args.preset, args.root, args.results, args.flows or FLOWS, args.models or KINDS, args.seeds,
                 show_progress=not args.no_progress)
    path = write_report(args.preset, args.results)
    if path is None:
        raise FileNotFoundError(f"no sr3d results for preset {args.preset!r} under {args.results}/sr3d; "
                                f"run `symbench sr3d --preset {args.preset}` first")
    print(f"wrote {path}")


def _discover(args: argparse.Namespace) -> None:
    from symbench.symmetry.octahedral import GROUPS
    from symbench.symmetry_discovery import run_discovery

    unknown = [g for g in args.subgroups if g not in GROUPS]
    if unknown:
        raise ValueError(f"unknown subgroup(s) {unknown}; choose from {', '.join(GROUPS)}")
    out = Path(args.results) / "symmetry_discovery"
    for name in args.subgroups:
        result = run_discovery(name, steps=args.steps, seed=args.seed, out_dir=out)
        print(f"{name}: true order {len(result.true_elements)}, recovered order {len(result.recovered.elements)}, "
              f"equal: {'yes' if result.equal else 'no'} ({result.table_path})")


def _check_preset(preset: str, presets: dict) -> None:
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(sorted(presets))}")


def _generate(args: argparse.Namespace) -> None:
    import datamodules

    path = datamodules.generate(args.dataset, args.preset, args.root, progress=not args.no_progress)
    print(f"dataset {args.dataset} (preset {args.preset}) at {path}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in LIGHTNING_SUBCOMMANDS:
            from symbench.lightning_cli import run_lightning_cli

            run_lightning_cli(argv)
            return 0
        args = _parser().parse_args(argv)
        handlers = {"data": _generate, "bench": _bench, "sweep": _sweep, "leaderboard": _leaderboard,
                    "alpha-sweep": _alpha_sweep, "levels": _levels, "nbody": _nbody, "digits": _digits,
                    "discover": _discover, "sr3d": _sr3d, "models": _models, "check-model": _check_model}
        return handlers[args.command](args) or 0
    except BAD_INPUT as err:
        print(f"symbench: error: {_root_message(err)}", file=sys.stderr)
        return 2
    return 0


def _root_message(err: BaseException) -> str:
    """One line: the message of the innermost bad-input error behind ``err`` (LightningCLI / jsonargparse wrap the
    datamodule's or model's own ``ValueError`` in a long report)."""
    root, seen = err, 0
    cause = err.__cause__ or err.__context__
    while cause is not None and seen < 20:
        if isinstance(cause, BAD_INPUT):
            root = cause
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    message = root.args[0] if isinstance(root, KeyError) and root.args else str(root)
    return next((line.strip(" -") for line in str(message).splitlines() if line.strip()), type(root).__name__)


if __name__ == "__main__":
    sys.exit(main())
