"""GPU check: every registered model on CPU and CUDA, a tiny fit + test in 32-true and bf16-mixed, paper-size timings.

    python benchmarks/gpu_check.py [--root data] [--out results/gpu] [--models ...] [--time-models ...]

1. Models: each registry model, built with the same weights on CPU and CUDA, gets the same random history; the
   relative differences ``max |a - b| / max |a|`` of the training-mode forward, the parameter gradients of the MSE
   loss and the eval-mode forward are recorded with TF32 off (full float32: expected at float32 round-off, ~1e-6)
   and on (TF32 matrix products and cuDNN convolutions: ~1e-3).
2. Fit + test: ``symbench bench``'s own run (:func:`symbench.bench.run_one`) of the heat benchmark's tiny preset
   (data generated if missing: a NumPy solver) on one GPU, in ``32-true`` and ``bf16-mixed``; the same best
   checkpoint is then tested on the CPU, and the test RMSEs of both are recorded.
3. Timings: a training step at the paper preset's sizes (model hyperparameters, history length, training rollout
   steps, global batch; ``--size`` grid) as ``symbench bench`` trains it (rollout loss, backward, Adam), median
   milliseconds per step and peak GPU memory, in float32 and bf16-mixed (autocast).

Writes ``<out>/gpu_check.json`` and ``<out>/gpu_check.md``. On a machine without CUDA it says so in one line, writes
nothing and exits with status 0. Carrying the compiled dependencies to a GPU machine that cannot download:
``scripts/device_wheels.sh``.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

FIT_BENCHMARK = "heat"


def rel(a: Tensor, b: Tensor) -> float:
    """``max |a - b| / max |a|`` (on the CPU, in float64)."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).abs().max() / a.abs().max().clamp_min(1e-30))


def _grads(model: nn.Module) -> Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def compare_model(name: str, x: Tensor, target: Tensor, width: int) -> dict[str, float]:
    """Forward (train mode), gradients and eval forward of ``name`` on CPU vs CUDA, TF32 off and on."""
    from symbench.fields import FieldLayout
    from symbench.hardware import set_float32_precision
    from symbench.models import build

    torch.manual_seed(0)
    cpu = build(name, in_frames=x.shape[1], layout=FieldLayout.of("velocity:vector"), width=width)
    out: dict[str, float] = {"params": sum(p.numel() for p in cpu.parameters())}
    reference: dict[str, Tensor] = {}
    for device, tf32 in (("cpu", False), ("cuda", False), ("cuda", True)):
        set_float32_precision(tf32)
        model = copy.deepcopy(cpu).to(device).train()
        xd, td = x.to(device), target.to(device)
        pred = model(xd)
        nn.functional.mse_loss(pred, td).backward()
        model.eval()
        with torch.no_grad():
            evaluated = model(xd)
        got = {"forward": pred, "gradients": _grads(model), "eval": evaluated}
        if device == "cpu":
            reference = got
            continue
        for key, value in got.items():
            out[f"{key}_{'tf32' if tf32 else 'fp32'}"] = rel(reference[key], value)
    set_float32_precision(False)
    return out


def fit_and_test(root: str, runs: str, model: str, precision: str) -> dict[str, Any]:
    """One tiny-preset run on the GPU (``run_one``), then its best checkpoint tested on the CPU."""
    import lightning as L

    import datamodules
    from symbench.bench import datamodule_args, run_directory, run_one
    from symbench.config import resolve
    from symbench.forecast import ForecastModule

    gpu = resolve(FIT_BENCHMARK, "tiny", model, 0, root,
                  overrides={"trainer": {"accelerator": "cuda", "devices": 1, "precision": precision}})
    start = time.perf_counter()
    rows = run_one(gpu, runs, progress=False)
    seconds = time.perf_counter() - start
    best = sorted((run_directory(gpu, runs) / "checkpoints").glob("best-*.ckpt"))[-1]
    cpu = resolve(FIT_BENCHMARK, "tiny", model, 0, root, overrides={"trainer": {"accelerator": "cpu"}})
    module = ForecastModule.load_from_checkpoint(best, map_location="cpu")
    dm = datamodules.entry(cpu.dataset).datamodule_class()(**datamodule_args(cpu))
    L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False).test(module, datamodule=dm, verbose=False)
    gpu_rmse = {r["split"]: r["value"] for r in rows if r["metric"] == "rmse"}
    cpu_rmse = {split: res["rmse"] for split, res in module.test_results.items()}
    eqerr = {r["metric"]: r["value"] for r in rows if r["metric"].startswith("eqerr_")}
    return {"model": model, "precision": precision, "seconds": round(seconds, 1), "gpu_rmse": gpu_rmse,
            "cpu_rmse_same_checkpoint": cpu_rmse, "gpu_eqerr": eqerr,
            "max_rel_rmse_gpu_vs_cpu": max(abs(gpu_rmse[s] - cpu_rmse[s]) / abs(cpu_rmse[s]) for s in cpu_rmse)}


def _timed(step: Callable[[], None], warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def time_model(name: str, size: int, warmup: int, repeats: int) -> dict[str, Any]:
    """ms per training step and peak memory at the paper preset's sizes of the model's first benchmark."""
    from symbench.config import model_benchmarks, resolve
    from symbench.fields import FieldLayout
    from symbench.forecast import rollout, step_mse
    from symbench.hardware import set_float32_precision
    from symbench.models import build

    bench = model_benchmarks(name)[0]
    cfg = resolve(bench, "paper", name, 0)
    frames, steps, batch = cfg.data["in_frames"], cfg.data["train_steps"], cfg.data["batch_size"]
    torch.manual_seed(0)
    model = build(name, in_frames=frames, layout=FieldLayout.of("velocity:vector"), **cfg.model_hparams).cuda()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(batch, frames, 2, size, size, device="cuda")
    target = torch.randn(batch, steps, 2, size, size, device="cuda")
    out: dict[str, Any] = {"model": name, "benchmark": bench, "batch": batch, "in_frames": frames,
                           "train_steps": steps, "grid": size}
    set_float32_precision(False)
    def step(autocast: bool) -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            loss = step_mse(rollout(model, x, steps), target).sum()
        loss.backward()
        opt.step()

    for precision, autocast in (("fp32", False), ("bf16-mixed", True)):
        torch.cuda.reset_peak_memory_stats()
        out[f"ms_{precision}"] = round(_timed(lambda a=autocast: step(a), warmup, repeats), 2)
        out[f"peak_mib_{precision}"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [f"# GPU check ({env['device']}, torch {env['torch']}, CUDA {env['cuda']}, {env['date']})", "",
             "## CPU vs CUDA, relative max difference", "",
             "| model | forward fp32 | grads fp32 | eval fp32 | forward tf32 | grads tf32 | eval tf32 |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in report["models"].items():
        cells = [f"{r[k]:.1e}" if k in r else r.get("error", "-")[:60]
                 for k in ("forward_fp32", "gradients_fp32", "eval_fp32", "forward_tf32", "gradients_tf32",
                           "eval_tf32")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"## Fit + test, {FIT_BENCHMARK} tiny preset (GPU test RMSE vs CPU test of the same checkpoint)",
              "", "| model | precision | s | max rel. RMSE difference | GPU RMSE |", "|---|---|---:|---:|---|"]
    for r in report["fit_test"]:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['precision']} | - | {r['error'][:80]} | - |")
            continue
        rmse = ", ".join(f"{s} {v:.4f}" for s, v in r["gpu_rmse"].items())
        lines.append(f"| {r['model']} | {r['precision']} | {r['seconds']} | {r['max_rel_rmse_gpu_vs_cpu']:.1e} | "
                     f"{rmse} |")
    lines += ["", "## Training step at paper sizes", "",
              "| model | benchmark | batch | ms fp32 | MiB fp32 | ms bf16-mixed | MiB bf16-mixed |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for r in report["timings"]:
        if "error" in r:
            lines.append(f"| {r['model']} | - | - | {r['error'][:80]} | | | |")
            continue
        lines.append(f"| {r['model']} | {r['benchmark']} | {r['batch']} | {r['ms_fp32']} | {r['peak_mib_fp32']} | "
                     f"{r['ms_bf16-mixed']} | {r['peak_mib_bf16-mixed']} |")
    return "\n".join(lines) + "\n"


def _guarded(fn: Callable[..., dict[str, Any]], *args: Any, **extra: Any) -> dict[str, Any]:
    """``fn(*args)``, or the error in one line (one failing model must not hide the others' results)."""
    try:
        return fn(*args)
    except Exception as err:  # noqa: BLE001 - recorded, not raised
        return {**extra, "error": f"{type(err).__name__}: {err}".splitlines()[0]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="data", help="data root (the heat tiny data are generated there if missing)")
    p.add_argument("--out", type=Path, default=Path("results/gpu"))
    p.add_argument("--models", nargs="+", help="models compared on CPU and CUDA (default: every registered one)")
    p.add_argument("--fit-models", nargs="+", default=["cnn", "equ_rot_cnn"], help=f"{FIT_BENCHMARK} models fitted")
    p.add_argument("--time-models", nargs="+", help="models timed at paper sizes (default: every registered one)")
    p.add_argument("--size", type=int, default=64, help="grid H = W of the timings")
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device is visible (torch {torch.__version__}, CUDA build {torch.version.cuda}); "
              "nothing checked, nothing written: run it on a machine with a GPU")
        return 0
    import datamodules
    from symbench.models import available

    names = args.models or available()
    env = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda,
           "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}
    print(f"gpu_check on {env['device']} (torch {env['torch']}, CUDA {env['cuda']})", flush=True)
    torch.manual_seed(0)
    x, target = torch.randn(4, 10, 2, 32, 32), torch.randn(4, 2, 32, 32)
    report: dict[str, Any] = {"environment": env, "models": {}, "fit_test": [], "timings": []}
    for name in names:
        report["models"][name] = _guarded(compare_model, name, x, target, 8)
        print(f"  compare {name}: {report['models'][name]}", flush=True)
    datamodules.generate(FIT_BENCHMARK, "tiny", args.root, progress=False)
    with tempfile.TemporaryDirectory() as runs:
        for model in args.fit_models:
            for precision in ("32-true", "bf16-mixed"):
                report["fit_test"].append(_guarded(fit_and_test, args.root, runs, model, precision, model=model,
                                                   precision=precision))
                print(f"  fit+test {model} {precision}: {report['fit_test'][-1]}", flush=True)
    for name in args.time_models or names:
        report["timings"].append(_guarded(time_model, name, args.size, 3, args.repeats, model=name))
        print(f"  time {name}: {report['timings'][-1]}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    (args.out / "gpu_check.md").write_text(markdown(report))
    print(f"wrote {args.out / 'gpu_check.json'}, {args.out / 'gpu_check.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
