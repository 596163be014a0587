"""The ``symbench`` command line. Each subcommand does one thing and prints what it wrote where.

    symbench data generate <dataset> --preset P [--root DIR]
    symbench data export <dataset> --format netcdf|zarr [--preset P] [--root DIR] [--out FILE] [--data.KEY VALUE ...]
    symbench fit|test|validate [LightningCLI arguments: -c config.yaml, --model.lr 1e-3, --data.preset tiny, ...]
    symbench bench <benchmark> --preset P [--models M ...] [--seeds S ...] [--data.KEY VALUE ...]
    symbench sweep <benchmark> --model M [--sampler grid|tpe] [--trials N] [--storage URL] [--workers N]
    symbench tune <benchmark> ... --trials N --preset P [--models M ...] [--workers N]
    symbench leaderboard [--benchmark B ...]
    symbench models [--benchmark B] [--preset P]
    symbench check-model MODEL_OR_package.module:Factory [--benchmark B] [--preset P]
    symbench alpha-sweep <benchmark> --model M [--alphas A ...] --preset P [--seeds S ...]
    symbench levels --preset P [--root DIR] [--models M ...] [--alpha A] [--epochs E] [--data-only]
    symbench strength --preset P [--families F ...] [--kinds K ...] [--seeds S ...] [--epochs E] [--data-only]
    symbench nbody --preset P [--root DIR] [--seeds S ...]
    symbench digits --preset P [--tasks T ...] [--groups G ...] [--seeds S ...] [--idx-dir DIR] [--report-only]
    symbench discover [--subgroups C4v D4h C4 Oh] [--steps N] [--seed S] [--results DIR]
    symbench sr3d --preset P [--flows sheared isotropic] [--models M ...] [--seeds S ...] [--report-only]

Bad input (unknown model, dataset, preset or benchmark, missing data, impossible window sizes, unreadable files)
ends with one line ``symbench: error: ...`` naming the thing and the fix, and exit status 2; runs that failed (e.g.
diverged) are named in one line with exit status 1; Ctrl-C prints one line and exits 130 (rerunning resumes).
``SYMBENCH_DEBUG=1`` prints the full traceback before that line.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path
from typing import Sequence

from symbench.extras import MissingExtra
from symbench.studies import STUDIES

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")
# Errors that mean bad input: reported as one line, exit status 2 (jsonargparse raises argparse.ArgumentError
# subclasses when exit_on_error is off; OSError covers unreadable or unwritable paths, ImportError an optional
# reader that is not installed, and a missing optional extra names the `pip install` that adds it).
BAD_INPUT: tuple[type[BaseException], ...] = (KeyError, ValueError, OSError, ImportError, argparse.ArgumentError,
                                              MissingExtra)
DOMAIN_PACKAGES = ("symbench", "datamodules")  # errors raised as classes of these packages carry the designed message
DEBUG_VARIABLE = "SYMBENCH_DEBUG"


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line. Only the study named ``command`` (every study when None) is imported to declare its
    options: a study may pull in escnn or Lightning."""
    load_all = command is None
    parser = argparse.ArgumentParser(prog="symbench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="generate datasets with real simulators")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    gen = data_sub.add_parser("generate", help="generate (or reuse) a dataset")
    gen.add_argument("dataset")
    gen.add_argument("--preset", default="cpu")
    gen.add_argument("--root", default="data", help="data root directory (default: data)")
    gen.add_argument("--no-progress", action="store_true")
    exp = data_sub.add_parser("export", help="a self-describing NetCDF or Zarr copy of a stored dataset (CF "
                              "attributes)")
    exp.add_argument("dataset")
    exp.add_argument("--format", default="netcdf", help="netcdf (one file) or zarr (a directory store)")
    exp.add_argument("--preset", default="cpu")
    exp.add_argument("--root", default="data", help="data root directory (default: data)")
    exp.add_argument("--out", help="output file or store (default: <dataset>-<preset>.nc/.zarr); datamodule options: "
                     "--data.KEY VALUE")

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
    _device_options(bench)
    bench.add_argument("--no-progress", action="store_true")
    bench.add_argument("--rerun", action="store_true",
                       help="train (model, seed) pairs again even if runs.csv has rows of the same configuration")
    bench.add_argument("--rerun-stale", action="store_true",
                       help="train only the (model, seed) pairs whose rows in runs.csv all come from older code or "
                            "settings (another configuration hash than HEAD's)")

    bench.add_argument("--width-factor", type=int, default=1,
                       help="multiply every model's width by this integer (about its square in parameters); write "
                            "to another --results directory")
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
    _device_options(sweep)  # one device per worker: a sweep runs its trials in parallel

    tune = sub.add_parser("tune", help="one TPE sweep of N trials per model of each benchmark (the same budget for "
                          "all); best configs and results/<benchmark>/tuning_<preset>.md")
    tune.add_argument("benchmarks", nargs="+")
    tune.add_argument("--trials", type=int, required=True, help="trials per model (every model gets this budget)")
    tune.add_argument("--preset", default="cpu")
    tune.add_argument("--models", nargs="+", help="default: every trainable model of each benchmark")
    tune.add_argument("--workers", type=int, default=1, help="worker processes per sweep")
    tune.add_argument("--root", default="data", help="data root directory")
    tune.add_argument("--runs", default="runs", help="checkpoints, logs and the sweeps' journals")
    tune.add_argument("--results", default="results", help="results directory (writes <results>/<benchmark>/)")
    tune.add_argument("--no-progress", action="store_true")
    _device_options(tune)

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

    for study in STUDIES:  # each study declares its own options; imported only when its command runs
        study_parser = sub.add_parser(study.command, help=study.help)
        if load_all or study.command == command:
            study.load().add_arguments(study_parser)

    for name in LIGHTNING_SUBCOMMANDS:
        sub.add_parser(name, help=f"LightningCLI {name} (-c config.yaml, --model.*, --data.*, --trainer.*)",
                       add_help=False)
    return parser


def _device_options(parser: argparse.ArgumentParser) -> None:
    """The Trainer's hardware options of every study (``--accelerator``, ``--devices``, ``--num-nodes``,
    ``--strategy``, ``--precision``) and ``--tf32``."""
    from symbench.studies.common import add_trainer_arguments

    add_trainer_arguments(parser)
    parser.add_argument("--tf32", action="store_true",
                        help="allow TF32 matrix products and cuDNN convolutions on CUDA (default: full float32)")


def _bench(args: argparse.Namespace) -> None:
    from symbench.bench import run_benchmark
    from symbench.config import load_benchmark
    from symbench.data_options import check_data_options, parse_data_options
    from symbench.studies.common import trainer_settings

    trainer = {**({"max_epochs": args.max_epochs} if args.max_epochs is not None else {}), **trainer_settings(args)}
    data = parse_data_options(args.data_tokens)
    check_data_options(load_benchmark(args.benchmark)["dataset"], data)
    run_benchmark(args.benchmark, args.preset, args.models, args.seeds, args.root, args.results, args.runs,
                  overrides={"trainer": trainer, "data": data}, progress=not args.no_progress, rerun=args.rerun,
                  use_best=not args.no_best, rerun_stale=args.rerun_stale, tf32=args.tf32,
                  width_factor=args.width_factor)


def _sweep(args: argparse.Namespace) -> None:
    from symbench import models
    from symbench.studies.common import trainer_settings
    from symbench.sweep.run import SweepSpec, run_sweep

    model = models.canonical(args.model)  # unknown model -> one line; outside symbench: name@version
    spec = SweepSpec(benchmark=args.benchmark, model=model, preset=args.preset, sampler=args.sampler,
                     trials=args.trials, storage=args.storage, study=args.study, root=args.root, runs=args.runs,
                     space=args.space, pruner=args.pruner, heartbeat=args.heartbeat, grace=args.grace,
                     progress=not args.no_progress, trainer=trainer_settings(args), tf32=args.tf32)
    run_sweep(spec, workers=args.workers)


def _tune(args: argparse.Namespace) -> None:
    from symbench.studies.common import trainer_settings
    from symbench.sweep.campaign import run_tune

    run_tune(args.benchmarks, args.preset, args.trials, args.models, root=args.root, runs=args.runs,
             results=args.results, workers=args.workers, progress=not args.no_progress,
             trainer=trainer_settings(args))


def _models(args: argparse.Namespace) -> None:
    from symbench.model_listing import model_rows, render

    print(render(model_rows(args.benchmark, args.preset, args.root), args.preset, args.root))


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
    from symbench.results import nonfinite_lines

    from symbench.config import is_study

    # Default: the leaderboard benchmarks; a study's rows (results/nbody/runs.csv, ...) when named with --benchmark.
    names = args.benchmark or sorted(p.parent.name for p in Path(args.results).glob("*/runs.csv")
                                     if not is_study(p.parent.name))
    if not names:
        raise FileNotFoundError(f"no results/<benchmark>/runs.csv under {args.results}; run `symbench bench` first")
    for name in names:
        if lines := nonfinite_lines(Path(args.results) / name / "runs.csv"):
            shown = ", ".join(map(str, lines[:5])) + (", ..." if len(lines) > 5 else "")
            print(f"note: {Path(args.results) / name / 'runs.csv'}: left out {len(lines)} row(s) with non-finite "
                  f"values (line(s) {shown}; runs that diverged before they were caught)")
        for path in write_leaderboard(name, args.results, model_order=models.available()):
            print(f"wrote {path}")
        plots, notes = write_plots(name, args.results, model_order=models.available())
        for line in [f"wrote {path}" for path in plots] + notes:
            print(line)
    for path in write_family_tables(args.results):
        print(f"wrote {path}")


def _generate(args: argparse.Namespace) -> None:
    import datamodules

    if args.data_command == "export":
        from symbench.data_options import check_data_options, parse_data_options
        from symbench.export import export

        options = {"preset": args.preset, "root": args.root, **parse_data_options(args.data_tokens)}
        check_data_options(args.dataset, options)
        print(f"wrote {export(args.dataset, options, args.format, args.out)}")
        return
    path = datamodules.generate(args.dataset, args.preset, args.root, progress=not args.no_progress)
    print(f"dataset {args.dataset} (preset {args.preset}) at {path}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; bad input -> one line and status 2, failed runs -> one line and status 1, Ctrl-C -> one
    line and status 130 (``SYMBENCH_DEBUG=1``: the traceback as well)."""
    from symbench.files import RunLocked
    from symbench.results import RunsFailed

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(argv)
    except KeyboardInterrupt:
        _debug_traceback()
        print("symbench: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except (RunsFailed, RunLocked) as err:
        _debug_traceback()
        print(f"symbench: error: {err}", file=sys.stderr)
        return 1
    except BAD_INPUT as err:
        _debug_traceback()
        print(f"symbench: error: {_root_message(err)}", file=sys.stderr)
        return 2


def _dispatch(argv: list[str]) -> int:
    if argv and argv[0] in LIGHTNING_SUBCOMMANDS:
        from symbench.lightning_cli import run_lightning_cli

        run_lightning_cli(argv)
        return 0
    data_tokens: list[str] = []
    if argv[:1] == ["bench"] or argv[:2] == ["data", "export"]:  # --data.KEY VALUE: datamodule options
        from symbench.data_options import split_data_tokens

        argv, data_tokens = split_data_tokens(argv)
    args = _parser(argv[0] if argv else None).parse_args(argv)
    args.data_tokens = data_tokens
    handlers = {"data": _generate, "bench": _bench, "sweep": _sweep, "tune": _tune, "leaderboard": _leaderboard,
                "models": _models, "check-model": _check_model}
    studies = {study.command: study for study in STUDIES}
    if args.command in studies:
        _quiet_unless_rank_zero()
    run = handlers.get(args.command) or studies[args.command].load().run
    return run(args) or 0


def _quiet_unless_rank_zero() -> None:
    """Under DDP every process runs the whole study; only global rank 0 writes results (:mod:`symbench.studies.common`)
    and says so on stdout. The others' stdout goes nowhere (their errors still reach stderr)."""
    from symbench.hardware import is_rank_zero

    if not is_rank_zero():
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 -- for the rest of the process


def _debug_traceback() -> None:
    if os.environ.get(DEBUG_VARIABLE, "") not in ("", "0"):
        traceback.print_exc()


def _chain(err: BaseException) -> list[BaseException]:
    """``err`` and the errors behind it, outermost first: the explicit cause, else the context unless it was
    suppressed (``raise ... from None``)."""
    chain = [err]
    while len(chain) < 20:
        last = chain[-1]
        nxt = last.__cause__ if last.__cause__ is not None else (None if last.__suppress_context__
                                                                 else last.__context__)
        if nxt is None or nxt in chain:
            break
        chain.append(nxt)
    return chain


def _root_message(err: BaseException) -> str:
    """One line: the message of the first error of our own packages behind ``err``, else of the innermost bad-input
    error (LightningCLI / jsonargparse wrap the datamodule's or model's own ``ValueError`` in a long report); an
    ``OSError`` is given with its file name."""
    chain = _chain(err)
    domain = [e for e in chain if type(e).__module__.split(".")[0] in DOMAIN_PACKAGES]
    root = domain[0] if domain else next((e for e in reversed(chain) if isinstance(e, BAD_INPUT)), err)
    if isinstance(root, KeyError) and root.args:
        message = str(root.args[0])
    elif isinstance(root, OSError) and root.filename is not None and root.strerror:
        message = f"{root.filename}: {root.strerror}"
    else:
        message = str(root)
    return next((line.strip(" -") for line in message.splitlines() if line.strip()), type(root).__name__)


if __name__ == "__main__":
    sys.exit(main())
