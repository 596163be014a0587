"""The full scaling of ICLR 2021 eq. 3, ``T_lam w(x, t) = lam w(lam x, lam^2 t)``, on a one-step model's history and
output (:class:`~symbench.symmetry.SpaceTimeScaling`): the action of the ``scale`` equivariance probe.

Exact checks on fields linear in space and time, where linear interpolation is exact: the analytic ``T_lam``, the
``scale`` test split's resampling of a whole window (history and target), and the time part's group law.
"""

from __future__ import annotations

import pytest
import torch

from symbench import symmetry
from symbench.fields import VELOCITY_2D, FieldLayout
from symbench.symmetry import SpaceTimeScaling, SpatialScaling, time_resample_matrix

LAYOUT = FieldLayout.of("velocity:vector", "temperature:scalar")
FRAMES, SIZE = 4, 9


def linear_field(times: torch.Tensor, size: int = SIZE, seed: int = 0) -> torch.Tensor:
    """``(len(times), C, size, size)`` float64 frames of ``w = a + b x + c y + d t`` per channel, ``x, y`` pixel
    offsets from the grid centre."""
    a, b, c, d = torch.randn(4, 1, LAYOUT.channels, 1, 1, generator=torch.Generator().manual_seed(seed),
                             dtype=torch.float64)
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    return a + b * r + c * (-r[:, None]) + d * times.view(-1, 1, 1, 1).double()


def analytic(lam: float, times: torch.Tensor, power: float) -> torch.Tensor:
    """``lam^e w(lam x, lam^2 t)`` of :func:`linear_field` (``e = 1`` on the velocity, ``power`` on the scalar)."""
    a, b, c, d = torch.randn(4, 1, LAYOUT.channels, 1, 1, generator=torch.Generator().manual_seed(0),
                             dtype=torch.float64)
    r = lam * (torch.arange(SIZE, dtype=torch.float64) - (SIZE - 1) / 2)
    w = a + b * r + c * (-r[:, None]) + d * lam**2 * times.view(-1, 1, 1, 1).double()
    return w * torch.tensor([lam, lam, lam**power], dtype=torch.float64).view(1, -1, 1, 1)


def test_time_resampling_is_exact_on_linear_histories_and_holds_the_oldest_frame() -> None:
    times = torch.arange(-FRAMES, 0, dtype=torch.float64)
    h = 0.7 - 1.3 * times  # linear in time
    assert torch.equal(time_resample_matrix(FRAMES, 1.0), torch.eye(FRAMES, dtype=torch.float64))
    for factor in (0.1, 0.48, 0.9, 1.0):  # every read time in [-FRAMES, 0): interpolated or extrapolated < 1 frame
        m = time_resample_matrix(FRAMES, factor)
        assert torch.allclose(m.sum(1), torch.ones(FRAMES, dtype=torch.float64))
        assert torch.allclose(m @ h, 0.7 - 1.3 * factor * times)
    # Group law of the time part (factors <= 1, where nothing is held).
    assert torch.allclose(time_resample_matrix(FRAMES, 0.5) @ time_resample_matrix(FRAMES, 0.6) @ h,
                          time_resample_matrix(FRAMES, 0.3) @ h)
    # Beyond the oldest frame the history is held: factor 3 reads t = -12, -9, -6, -3.
    assert torch.equal(time_resample_matrix(FRAMES, 3.0) @ h, torch.stack([h[0], h[0], h[0], h[1]]))
    with pytest.raises(ValueError, match="factor > 0"):
        time_resample_matrix(FRAMES, 0.0)


@pytest.mark.parametrize("lam", [0.5, 0.8, 1.0])
@pytest.mark.parametrize("power", [0.0, 2.0])
def test_history_and_output_follow_eq_3(lam: float, power: float) -> None:
    """A history at ``t = -T..-1`` becomes ``lam^e w(lam x, lam^2 t)`` (time about the predicted frame at 0); the
    predicted frame, at the time origin, is scaled in space only (as :class:`SpatialScaling`)."""
    times = torch.arange(-FRAMES, 0, dtype=torch.float64)
    history = linear_field(times)[None]
    g = SpaceTimeScaling(lam, power)
    assert torch.allclose(g.act(history, LAYOUT)[0], analytic(lam, times, power), atol=1e-10)
    frame = linear_field(torch.zeros(1))
    assert torch.equal(g.act(frame, LAYOUT), SpatialScaling(lam, power).act(frame, LAYOUT))
    assert torch.allclose(g.act(frame, LAYOUT), analytic(lam, torch.zeros(1), power), atol=1e-10)


def test_agrees_with_the_scale_test_split_on_a_whole_window() -> None:
    """:func:`~symbench.symmetry.scale` on a window (history + target) read from ``t0 = T (1 - lam^2)``, i.e. about
    the target frame, gives the probe's transformed history and transformed target (per-sample ``lam``)."""
    times = torch.arange(-FRAMES, 1, dtype=torch.float64)
    windows = torch.stack([linear_field(times, seed=0), linear_field(times, seed=1)])
    lams = torch.tensor([0.6, 0.9], dtype=torch.float64)
    g = SpaceTimeScaling(lams)
    history, target = g.act(windows[:, :FRAMES], LAYOUT), g.act(windows[:, FRAMES], LAYOUT)
    for i, lam in enumerate(lams.tolist()):
        split = symmetry.scale(windows[i], LAYOUT, lam, FRAMES + 1, (SIZE, SIZE), t0=FRAMES * (1 - lam**2))
        assert torch.allclose(split[:FRAMES], history[i], atol=1e-10)
        assert torch.allclose(split[FRAMES], target[i], atol=1e-10)


def test_probe_elements_draw_like_the_splits_and_scale_in_space_time() -> None:
    for name in ("um", "mag", "rot", "scale"):
        drawn = symmetry.sample_elements(name, 5, torch.Generator().manual_seed(3))
        probe = symmetry.probe_elements(name, 5, torch.Generator().manual_seed(3))
        if name == "scale":
            assert isinstance(probe, SpaceTimeScaling) and torch.equal(probe.lam, drawn.lam)
        else:
            assert probe is not None and type(probe) is type(drawn)
    g = SpaceTimeScaling(0.8) @ SpaceTimeScaling(0.5)
    assert isinstance(g, SpaceTimeScaling) and g.lam == pytest.approx(0.4)
    assert isinstance(SpaceTimeScaling(0.5).inverse(), SpaceTimeScaling)
    assert not isinstance(SpaceTimeScaling(0.5) @ SpatialScaling(0.5), SpatialScaling)  # a composition of two kinds
    with pytest.raises(ValueError, match="per-sample lam"):
        SpaceTimeScaling(torch.ones(3)).act(torch.zeros(2, FRAMES, 2, SIZE, SIZE), VELOCITY_2D)
