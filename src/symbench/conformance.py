"""``symbench check-model``: the contract checks symbench runs on its own models, and the measured equivariance.

On a few validation windows of a benchmark (its data at a preset, generated if missing) a model, untrained, with
the preset's hyperparameters, is checked for: the output shape (``(B, T_in, C, H, W) -> (B, C, H, W)``, finite,
also for a batch of one), a gradient reaching every parameter, a training loss that decreases over a few Adam steps
on those windows, a state-dict round trip, a Lightning checkpoint round trip (:class:`~symbench.forecast.
ForecastModule` rebuilt from the checkpoint's hyperparameters), determinism (two builds with one seed agree), and
``torch.compile``-ability (Dynamo graph capture with the ``eager`` backend, so no C++ compile; reported only).

Equivariance: for every group action of :mod:`symbench.symmetry` (``um``, ``mag``, ``rot`` quarter turns,
``rot_any`` arbitrary angles, ``reflect``, ``translate`` periodic shifts, ``scale``) the relative error
``||f(g x) - g f(x)|| / ||g f(x)||`` pooled over the windows (:class:`~symbench.metrics.EquivarianceError`), with the
benchmark's first plain model, built the same way, beside it for scale. A model claiming a symmetry (a
``symmetries`` attribute of the model or its factory, or a registry / entry-point ``ModelSpec.symmetries``) fails
when its error is above :data:`ROUND_OFF` for an exact group, or not below ``fraction`` times the plain model's for
an approximate one (interpolated rotations and scalings, where even an equivariant architecture has an error).
"""

from __future__ import annotations

import copy
import io
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

import datamodules
from symbench import models, symmetry
from symbench.config import RunConfig, benchmark_models, resolve
from symbench.fields import FieldLayout
from symbench.metrics import EquivarianceError, equivariance_pair

ROUND_OFF = 1000 * torch.finfo(torch.float32).eps  # ~1.2e-4: float32 round-off through a deep net, with margin
FRACTION = 0.5  # an approximate symmetry claim must halve the plain model's error
# Group actions: name -> (exact on the grid, element for n windows drawn with a generator).
ACTIONS: dict[str, tuple[bool, Callable[[int, torch.Generator], symmetry.GroupElement]]] = {
    "um": (True, lambda n, gen: symmetry.sample_elements("um", n, gen)),
    "mag": (True, lambda n, gen: symmetry.sample_elements("mag", n, gen)),
    "rot": (True, lambda n, gen: symmetry.sample_elements("rot", n, gen)),
    "rot_any": (False, lambda n, gen: symmetry.sample_elements("rot_any", n, gen)),
    "reflect": (True, lambda n, gen: symmetry.D4.reflection("x")),
    "translate": (True, lambda n, gen: symmetry.Translation(*torch.randint(1, 8, (2,), generator=gen).tolist())),
    "scale": (False, lambda n, gen: symmetry.sample_elements("scale", n, gen)),
}
# Claim names (case-insensitive) -> the actions they promise.
CLAIMS = {**{name: (name,) for name in ACTIONS}, "uniform_motion": ("um",), "magnitude": ("mag",),
          "c4": ("rot",), "rot90": ("rot",), "d4": ("rot", "reflect"), "so2": ("rot_any",), "rotation": ("rot_any",),
          "reflection": ("reflect",), "translation": ("translate",), "scaling": ("scale",)}
WINDOWS = 2  # validation windows the checks run on
ADAM_STEPS = 5


@dataclass
class Check:
    name: str
    ok: bool | None  # None: reported, not required
    detail: str


@dataclass
class Report:
    model: str
    benchmark: str
    preset: str
    plain: str
    params: int
    claims: list[str]
    checks: list[Check] = field(default_factory=list)
    equivariance: dict[str, dict[str, Any]] = field(default_factory=dict)

    def failures(self) -> list[str]:
        """One phrase per failed check or unmet symmetry claim."""
        out = [f"{c.name}: {c.detail}" for c in self.checks if c.ok is False]
        for name, e in self.equivariance.items():
            if e["claimed"] and not e["ok"]:
                out.append(f"claims {name} equivariance but its relative {name} error is {e['model']:.2e} "
                           f"(needs {e['bound']})")
        return out

    def table(self) -> str:
        lines = [f"check-model {self.model} on {self.benchmark} (preset {self.preset}; {self.params:,} parameters)",
                 "", "| check | result | detail |", "|---|---|---|"]
        verdict = {True: "pass", False: "FAIL", None: "info"}
        lines += [f"| {c.name} | {verdict[c.ok]} | {c.detail} |" for c in self.checks]
        lines += ["", f"| group | exact | relative error | {self.plain} (plain) | claimed | result |",
                  "|---|---|---|---|---|---|"]
        for name, e in self.equivariance.items():
            result = ("pass" if e["ok"] else "FAIL") if e["claimed"] else ""
            lines.append(f"| {name} | {'yes' if e['exact'] else 'no'} | {e['model']:.2e} | {e['plain']:.2e} | "
                         f"{'yes' if e['claimed'] else ''} | {result} |")
        return "\n".join(lines)


def claimed_actions(claims: list[str], model: str) -> set[str]:
    unknown = [c for c in claims if c.lower() not in CLAIMS]
    if unknown:
        raise ValueError(f"model {model!r} claims unknown symmetry {unknown[0]!r}; known: {', '.join(CLAIMS)}")
    return {a for c in claims for a in CLAIMS[c.lower()]}


def check_model(name: str, benchmark: str = "rbc", preset: str = "tiny", root: str | Path = "data", seed: int = 0,
                fraction: float = FRACTION, compile_check: bool = True, progress: bool = False) -> Report:
    """Run every contract check and measure the equivariance errors of model ``name`` (see the module doc)."""
    cfg = resolve(benchmark, preset, name, seed, root, use_best=False)  # bad model / preset -> one line
    plain = next(m for m in benchmark_models(benchmark, preset) if models.source(m) == "symbench"
                 and models.spec(m).family == "plain")
    history, target, layout, dm = _windows(cfg, progress)
    net = _build(cfg, dm, seed)
    claims = list(dict.fromkeys([*models.spec(cfg.model).symmetries, *getattr(net, "symmetries", ())]))
    report = Report(cfg.model, benchmark, preset, plain, sum(p.numel() for p in net.parameters()), claims)
    promised = claimed_actions(claims, cfg.model)
    report.checks.append(_shape(net, history))
    if report.checks[-1].ok:
        report.checks += [_gradients(net, history, target), _learns(cfg, dm, seed, history, target),
                          _state_dict(cfg, dm, seed, history), _checkpoint(cfg, dm, seed, history),
                          _determinism(cfg, dm, seed, history)]
        report.checks.append(_compiles(net, history) if compile_check
                             else Check("torch.compile", None, "skipped (--no-compile)"))
        plain_net = _build(resolve(benchmark, preset, plain, seed, root, use_best=False), dm, seed)
        for action, (exact, element) in ACTIONS.items():
            g = element(history.shape[0], torch.Generator().manual_seed(seed))
            err, ref = (_relative_error(m, history, g, layout) for m in (net, plain_net))
            bound = ROUND_OFF if exact else fraction * ref
            report.equivariance[action] = {
                "exact": exact, "model": err, "plain": ref, "claimed": action in promised, "ok": err <= bound,
                "bound": f"<= {bound:.1e}, float32 round-off" if exact else f"< {fraction:g} x plain = {bound:.1e}"}
    return report


def write_json(report: Report, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**asdict(report), "failures": report.failures()}, indent=2) + "\n")
    return path


def benchmark_datamodule(cfg: RunConfig, generate: bool, progress: bool = False) -> Any:
    """The datamodule of ``cfg`` set up for fitting; the data are generated first when ``generate`` (else a missing
    dataset raises ``FileNotFoundError``)."""
    if generate and cfg.data.get("source", "generated") == "generated":
        datamodules.generate(cfg.dataset, cfg.data.get("preset", cfg.preset), cfg.data["root"], progress=progress)
    dm = datamodules.entry(cfg.dataset).datamodule_class()(**cfg.data)
    dm.setup("fit")
    return dm


def _windows(cfg: RunConfig, progress: bool) -> tuple[Tensor, Tensor, FieldLayout, Any]:
    """The first :data:`WINDOWS` validation windows: history ``(B, T_in, C, H, W)`` and the next frame."""
    dm = benchmark_datamodule(cfg, generate=True, progress=progress)
    history, target, *_ = next(iter(dm.val_dataloader()))
    return history[:WINDOWS], target[:WINDOWS, 0], dm.layout, dm


def _build(cfg: RunConfig, dm: Any, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return models.build(cfg.model, in_frames=dm.in_frames, layout=dm.layout, **cfg.model_hparams).eval()


def _shape(net: nn.Module, history: Tensor) -> Check:
    expected = (history.shape[0], *history.shape[2:])
    try:
        with torch.no_grad():
            out, one = net(history), net(history[:1])
    except ValueError as err:  # the shape hook of a model from outside symbench
        return Check("output shape", False, str(err))
    if tuple(out.shape) != expected or tuple(one.shape) != (1, *expected[1:]):
        return Check("output shape", False, f"{tuple(out.shape)} for a history {tuple(history.shape)}; "
                                            f"expected {expected}")
    if not torch.isfinite(out).all():
        return Check("output shape", False, "non-finite values in the output")
    return Check("output shape", True, f"{tuple(history.shape)} -> {expected}, finite, also for a batch of one")


def _gradients(net: nn.Module, history: Tensor, target: Tensor) -> Check:
    net = copy.deepcopy(net).train()
    loss = nn.functional.mse_loss(net(history), target)
    if hasattr(net, "regularization_loss"):
        loss = loss + net.regularization_loss()
    loss.backward()
    dead = [n for n, p in net.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    return Check("gradients", not dead, f"no gradient: {', '.join(dead[:5])}" + (" ..." if len(dead) > 5 else "")
                 if dead else "every parameter gets a gradient (with regularization_loss when defined)")


def _learns(cfg: RunConfig, dm: Any, seed: int, history: Tensor, target: Tensor) -> Check:
    net = _build(cfg, dm, seed).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(ADAM_STEPS + 1):
        opt.zero_grad()
        loss = nn.functional.mse_loss(net(history), target)
        losses.append(loss.item())
        loss.backward()
        opt.step()
    return Check("loss decreases", losses[-1] < losses[0],
                 f"MSE {losses[0]:.4g} -> {losses[-1]:.4g} after {ADAM_STEPS} Adam steps (lr 1e-3) on "
                 f"{history.shape[0]} windows")


def _trained_state(cfg: RunConfig, dm: Any, seed: int, history: Tensor) -> nn.Module:
    """A model whose state differs from a fresh build (one training-mode pass moves batch-norm statistics)."""
    net = _build(cfg, dm, seed).train()
    with torch.no_grad():
        net(history)
    return net.eval()


def _state_dict(cfg: RunConfig, dm: Any, seed: int, history: Tensor) -> Check:
    source = _trained_state(cfg, dm, seed, history)
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    target = _build(cfg, dm, seed + 1)
    target.load_state_dict(torch.load(buffer, weights_only=True))
    with torch.no_grad():
        same = torch.equal(target(history), source(history))
    return Check("state-dict round trip", same, "identical outputs after save / load into a fresh build" if same
                 else "outputs differ after load_state_dict (state kept outside parameters and buffers?)")


def _checkpoint(cfg: RunConfig, dm: Any, seed: int, history: Tensor) -> Check:
    import lightning

    from symbench.forecast import ForecastModule

    torch.manual_seed(seed)
    module = ForecastModule(model=cfg.model, model_hparams=cfg.model_hparams, fields=dm.fields,
                            in_frames=dm.in_frames, train_steps=dm.train_steps, rollout_steps=dm.rollout_steps)
    module.net.load_state_dict(_trained_state(cfg, dm, seed, history).state_dict())
    buffer = io.BytesIO()
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "pytorch-lightning_version": lightning.__version__}, buffer)
    buffer.seek(0)
    loaded = ForecastModule.load_from_checkpoint(buffer, map_location="cpu").eval()
    with torch.no_grad():
        same = torch.equal(loaded(history), module.eval()(history))
    return Check("checkpoint round trip", same, "ForecastModule.load_from_checkpoint rebuilds it by name with "
                 "identical outputs" if same else "the module rebuilt from the checkpoint predicts differently")


def _determinism(cfg: RunConfig, dm: Any, seed: int, history: Tensor) -> Check:
    a, b = _build(cfg, dm, seed), _build(cfg, dm, seed)
    with torch.no_grad():
        same = torch.equal(a(history), b(history)) and torch.equal(a(history), a(history))
    return Check("determinism", same, f"two builds with seed {seed} agree, repeated passes agree" if same
                 else f"two builds with seed {seed} (or two passes of one) predict differently")


def _compiles(net: nn.Module, history: Tensor) -> Check:
    start = time.perf_counter()
    try:
        explained = torch._dynamo.explain(net)(history)
    except Exception as err:  # reported, not required
        return Check("torch.compile", None, f"Dynamo cannot capture it ({type(err).__name__}: "
                                            f"{str(err).splitlines()[0][:120] if str(err) else ''})")
    finally:
        torch._dynamo.reset()
    return Check("torch.compile", None, f"Dynamo captures {explained.graph_count} graph(s), "
                                        f"{explained.graph_break_count} graph break(s) "
                                        f"({time.perf_counter() - start:.1f} s, eager backend)")


def _relative_error(net: nn.Module, history: Tensor, g: symmetry.GroupElement, layout: FieldLayout) -> float:
    metric = EquivarianceError()
    metric.update(*equivariance_pair(net, history, lambda x: g.act(x, layout)))
    return float(metric.compute()["relative"])
