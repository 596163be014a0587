"""The parameter-free baselines (persistence, linear extrapolation): exact values on a hand-built sequence, land
kept at zero, a place in every forecasting benchmark, and `bench` testing them without fitting."""

from __future__ import annotations

import pytest
import torch

from symbench import models
from symbench.config import benchmark_models
from symbench.fields import VELOCITY_2D
from symbench.forecast import rollout
from symbench.untrained import trainable

FORECASTING = ("rbc", "heat", "smoke-translation", "smoke-rotation", "smoke-scaling", "jetflow", "ocean",
               "ocean-relaxed", "ocean-temperature")
T_IN, STEPS = 3, 5


def _line(frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x_t = a + b t`` for ``t = 0 .. frames - 1`` (random fields ``a``, ``b``), and ``b``."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 1, 2, 6, 7, generator=gen), torch.randn(2, 1, 2, 6, 7, generator=gen)
    t = torch.arange(frames, dtype=torch.float32).view(1, -1, 1, 1, 1)
    return a + b * t, b[:, 0]


def _baseline(name: str) -> torch.nn.Module:
    return models.build(name, in_frames=T_IN, layout=VELOCITY_2D, width=16)  # a preset's width: accepted, unused


def test_linear_extrapolation_is_exact_on_a_line_and_persistence_lags_b_per_step():
    frames, b = _line(T_IN + STEPS)
    history, target = frames[:, :T_IN], frames[:, T_IN:]
    linear = rollout(_baseline("linear"), history, STEPS)
    torch.testing.assert_close(linear, target, rtol=0, atol=1e-5)
    persistence = rollout(_baseline("persistence"), history, STEPS)
    for s in range(1, STEPS + 1):  # error at step s: s b (it repeats x_{T_in - 1} while x grows by b per frame)
        torch.testing.assert_close(target[:, s - 1] - persistence[:, s - 1], s * b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["persistence", "linear"])
def test_baselines_keep_land_at_zero_and_have_nothing_to_train(name):
    frames, _ = _line(T_IN + STEPS)
    land = torch.zeros(2, 6, 7, dtype=torch.bool)
    land[:, :2, 3:] = True
    frames = torch.where(land[:, None, None], torch.zeros(()), frames)  # the data are 0 on land
    model = _baseline(name)
    pred = rollout(model, frames[:, :T_IN], STEPS)  # no mask given: the model alone keeps land at 0
    assert pred[:, :, :, land[0]].abs().max() == 0
    assert pred[:, :, :, ~land[0]].abs().min() > 0
    assert sum(p.numel() for p in model.parameters()) == 0 and not trainable(model)


def test_trainable_reads_the_parameters_not_the_name():
    net = torch.nn.Linear(2, 2)
    assert trainable(net)
    net.requires_grad_(False)
    assert not trainable(net)


def test_linear_needs_two_frames_and_checks_the_history():
    with pytest.raises(ValueError, match="at least 2 frames"):
        models.build("linear", in_frames=1, layout=VELOCITY_2D)
    with pytest.raises(ValueError, match=r"T_in=3"):
        _baseline("persistence")(torch.zeros(1, 2, 2, 4, 4))


@pytest.mark.parametrize("bench_name", FORECASTING)
def test_every_forecasting_benchmark_lists_both_baselines(bench_name):
    assert {"persistence", "linear"} <= set(benchmark_models(bench_name))
