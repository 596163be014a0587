"""Analytic tests of symbench.metrics: rollout RMSE, energy spectra and ESE, equivariance error."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from symbench.metrics import (
    EnergySpectrumError,
    EquivarianceError,
    RolloutRMSE,
    data_equivariance_error,
    equivariance_pair,
    radial_energy_spectrum,
    turbulent_energy_spectrum,
)


def rot90_scalar(x: torch.Tensor) -> torch.Tensor:
    """Counter-clockwise quarter turn of scalar fields ``(..., C, H, W)``."""
    return torch.rot90(x, 1, (-2, -1))


def rot90_velocity(vel: torch.Tensor) -> torch.Tensor:
    """Quarter turn of a velocity field ``(..., 2, H, W)``: grid rotated and ``(u, v) -> (-v, u)``."""
    turned = torch.rot90(vel, 1, (-2, -1))
    return torch.stack([-turned[..., 1, :, :], turned[..., 0, :, :]], dim=-3)


def fourier_velocity(h: int, w: int, mx: int, my: int, amplitude: float = 1.0) -> torch.Tensor:
    """``u = A cos(2 pi (mx x / w + my y / h))``, ``v = 0`` as ``(2, H, W)`` in float64."""
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    u = amplitude * torch.cos(2 * math.pi * (mx * x / w + my * y / h))
    return torch.stack([u, torch.zeros_like(u)])


def band_limited_velocity(shape: tuple[int, ...], h: int, w: int, generator: torch.Generator) -> torch.Tensor:
    """Random real velocity ``(*shape, 2, H, W)`` with every DFT mode of ``|kappa| >= min(h, w)//2 + 1/2`` removed."""
    field = torch.randn(*shape, 2, h, w, generator=generator, dtype=torch.float64)
    length = min(h, w)
    ky = torch.fft.fftfreq(h, d=1.0 / length, dtype=torch.float64)
    kx = torch.fft.fftfreq(w, d=1.0 / length, dtype=torch.float64)
    inside = torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2) < length // 2 + 0.5
    return torch.fft.ifft2(torch.fft.fft2(field) * inside).real


# --------------------------------------------------------------------------------------------- RolloutRMSE


def test_rmse_known_error_per_step_and_horizon_takes_the_square_root():
    steps = 4
    errors = torch.tensor([3.0, -1.0, 0.5, 2.0])
    target = torch.randn(5, steps, 3, 6, 7)
    pred = target + errors.view(1, steps, 1, 1, 1)
    metric = RolloutRMSE(steps)
    metric.update(pred, target)
    out = metric.compute()
    torch.testing.assert_close(out["per_step"], errors.abs().double())
    torch.testing.assert_close(out["horizon"], errors.square().mean().sqrt().double())
    assert out["per_step"][0].item() == pytest.approx(3.0)  # |e|, not e^2 = 9


def test_rmse_mask_pools_valid_pixels_and_ignores_nan_land():
    # Sample 0: error 1 on 10 valid pixels; sample 1: error 3 on 30 valid pixels; land holds NaN.
    target = torch.zeros(2, 1, 1, 8, 8)
    mask = torch.zeros(2, 1, 1, 8, 8, dtype=torch.bool)
    mask[0].view(-1)[:10] = True
    mask[1].view(-1)[:30] = True
    pred = torch.where(mask, torch.tensor([1.0, 3.0]).view(2, 1, 1, 1, 1), torch.tensor(float("nan")))
    metric = RolloutRMSE(1)
    metric.update(pred, target, mask)
    out = metric.compute()
    # Pooled MSE = (10 * 1 + 30 * 9) / 40 = 7; the mean of per-sample RMSEs would be 2, of MSEs 5.
    assert out["per_step"].item() == pytest.approx(math.sqrt(7.0))
    assert out["horizon"].item() == pytest.approx(math.sqrt(7.0))


def test_rmse_float_mask_broadcasts_over_steps_and_channels():
    target = torch.zeros(1, 2, 2, 2, 2)
    pred = torch.ones(1, 2, 2, 2, 2) * torch.tensor([2.0, 4.0]).view(1, 2, 1, 1, 1)
    weights = torch.tensor([[1.0, 0.0], [0.5, 0.0]])  # (H, W): two valid pixels, one half-weighted
    metric = RolloutRMSE(2)
    metric.update(pred, target, weights)
    torch.testing.assert_close(metric.compute()["per_step"], torch.tensor([2.0, 4.0], dtype=torch.float64))


def test_rmse_accumulates_sums_over_updates_and_grid_sizes():
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(b, 3, 2, n, n, generator=g), torch.randn(b, 3, 2, n, n, generator=g))
               for b, n in [(1, 8), (5, 8), (2, 12)]]
    metric = RolloutRMSE(3)
    for pred, target in batches:
        metric.update(pred, target)
    out = metric.compute()
    sq = [(p.double() - t.double()).square() for p, t in batches]
    sse = torch.stack([s.sum((0, 2, 3, 4)) for s in sq]).sum(0)
    count = sum(s[:, 0].numel() for s in sq)
    torch.testing.assert_close(out["per_step"], (sse / count).sqrt())
    torch.testing.assert_close(out["horizon"], (sse.sum() / (3 * count)).sqrt())
    # The same-grid batches in one update give the same numbers as in two.
    single = RolloutRMSE(3)
    single.update(torch.cat([batches[0][0], batches[1][0]]), torch.cat([batches[0][1], batches[1][1]]))
    split = RolloutRMSE(3)
    split.update(*batches[0])
    split.update(*batches[1])
    torch.testing.assert_close(split.compute()["per_step"], single.compute()["per_step"])


def test_rmse_merge_state_of_two_instances_equals_one():
    g = torch.Generator().manual_seed(1)
    pred, target = torch.randn(7, 2, 3, 5, 5, generator=g), torch.randn(7, 2, 3, 5, 5, generator=g)
    whole, left, right = RolloutRMSE(2), RolloutRMSE(2), RolloutRMSE(2)
    whole.update(pred, target)
    left.update(pred[:2], target[:2])
    right.update(pred[2:], target[2:])
    left.merge_state(right)
    for key in ("per_step", "horizon"):
        torch.testing.assert_close(left.compute()[key], whole.compute()[key])


def test_rmse_rejects_wrong_rollout_length():
    with pytest.raises(ValueError, match="steps"):
        RolloutRMSE(3).update(torch.zeros(1, 2, 1, 4, 4), torch.zeros(1, 2, 1, 4, 4))


# --------------------------------------------------------------------------------------------- spectra


@pytest.mark.parametrize(("h", "w", "mx", "my", "k"), [
    (16, 16, 3, 0, 3),
    (16, 16, 0, 5, 5),
    (32, 32, 3, 4, 5),  # |kappa| = 5 exactly
    (16, 16, 2, 2, 3),  # |kappa| = 2.83 rounds to the nearest bin
    (16, 16, 8, 0, 8),  # Nyquist along x lands in the last bin
    (16, 32, 4, 0, 2),  # 4 cycles over 32 pixels = 2 cycles per min(H, W) = 16 pixels
])
def test_single_fourier_mode_puts_its_energy_in_one_bin(h, w, mx, my, k):
    amplitude = 1.7
    vel = fourier_velocity(h, w, mx, my, amplitude)
    spectrum = radial_energy_spectrum(vel)
    assert spectrum.shape == (min(h, w) // 2 + 1,)
    kinetic = 0.5 * vel.square().sum(0).mean()
    expected = torch.zeros_like(spectrum)
    expected[k] = kinetic
    torch.testing.assert_close(spectrum, expected)


@pytest.mark.parametrize(("h", "w"), [(16, 16), (15, 15), (12, 20)])
def test_parseval_total_equals_mean_kinetic_energy(h, w):
    vel = band_limited_velocity((3,), h, w, torch.Generator().manual_seed(2))
    spectrum = radial_energy_spectrum(vel)
    torch.testing.assert_close(spectrum.sum(-1), 0.5 * vel.square().sum(-3).mean((-2, -1)))


def test_corner_modes_beyond_the_last_bin_are_dropped():
    checkerboard = fourier_velocity(16, 16, 8, 8)  # |kappa| = 8 sqrt(2) > K - 1/2 = 8.5
    assert radial_energy_spectrum(checkerboard).abs().max().item() < 1e-12


@pytest.mark.parametrize(("h", "w"), [(16, 16), (12, 20)])
def test_spectrum_is_invariant_under_quarter_turns(h, w):
    vel = torch.randn(2, 2, h, w, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    spectrum = radial_energy_spectrum(vel)
    torch.testing.assert_close(radial_energy_spectrum(rot90_velocity(vel)), spectrum)


def test_turbulent_spectrum_sums_to_mean_turbulence_kinetic_energy():
    vel = band_limited_velocity((2, 5), 16, 16, torch.Generator().manual_seed(4)) + 3.0  # mean flow is removed
    fluct = vel - vel.mean(1, keepdim=True)
    tke = 0.5 * fluct.square().sum(2).mean(1)  # per-pixel TKE (B, H, W), appendix B.7
    torch.testing.assert_close(turbulent_energy_spectrum(vel).sum(-1), tke.mean((-2, -1)))


# --------------------------------------------------------------------------------------------- ESE


def rollout(seed: int, b: int = 3, s: int = 4, h: int = 16, w: int = 16) -> torch.Tensor:
    return torch.randn(b, s, 2, h, w, generator=torch.Generator().manual_seed(seed))


def test_ese_of_target_against_itself_is_zero():
    target = rollout(5)
    metric = EnergySpectrumError()
    metric.update(target.clone(), target)
    assert metric.compute().item() == 0.0


@pytest.mark.parametrize("a", [0.5, 3.0, 10.0])
def test_ese_of_scaled_field_is_log10_of_a_squared(a):
    target = rollout(6)
    metric = EnergySpectrumError()
    metric.update(a * target, target)
    assert metric.compute().item() == pytest.approx(abs(math.log10(a**2)), rel=1e-9)


def test_ese_of_constant_fields_is_finite():
    target, constant = rollout(7), torch.ones(3, 4, 2, 16, 16)
    against_turbulent = EnergySpectrumError()
    against_turbulent.update(constant, target)
    value = against_turbulent.compute().item()
    assert math.isfinite(value) and 8.0 < value < 16.0  # about -log10(rel_floor) = 12 decades per bin
    both_constant = EnergySpectrumError()
    both_constant.update(constant, 2 * constant)
    assert both_constant.compute().item() == 0.0


def test_ese_penalises_smoothing_more_than_noise():
    target = rollout(8)
    smoothed = torch.nn.functional.avg_pool2d(target.flatten(0, 1), 3, stride=1, padding=1,
                                              count_include_pad=False).view_as(target)
    noisy = target + 0.3 * rollout(9)
    ese_smooth, ese_noisy = EnergySpectrumError(), EnergySpectrumError()
    ese_smooth.update(smoothed, target)
    ese_noisy.update(noisy, target)
    assert ese_smooth.compute() > 3 * ese_noisy.compute()


def test_ese_merge_state_over_grids_equals_pooled_mean():
    small, large = rollout(10, h=8, w=8), rollout(11, b=2, h=16, w=16)
    left, right = EnergySpectrumError(), EnergySpectrumError()
    left.update(2 * small, small)  # 3 samples x 4 bins, each (log10 4)^2
    right.update(large, large)  # 2 samples x 8 bins, each 0
    left.merge_state(right)
    expected = math.sqrt(12 * math.log10(4.0) ** 2 / (12 + 16))
    assert left.compute().item() == pytest.approx(expected, rel=1e-9)


def test_ese_rejects_single_step_rollouts():
    with pytest.raises(ValueError, match="S>=2"):
        EnergySpectrumError().update(torch.zeros(1, 1, 2, 8, 8), torch.zeros(1, 1, 2, 8, 8))


# --------------------------------------------------------------------------------------------- equivariance


def last_frame(history: torch.Tensor) -> torch.Tensor:
    return history[:, -1]


def test_identity_model_has_zero_equivariance_error_under_rotation():
    history = torch.randn(2, 3, 2, 8, 8, generator=torch.Generator().manual_seed(12))
    metric = EquivarianceError()
    metric.update(*equivariance_pair(last_frame, history, rot90_scalar))
    out = metric.compute()
    assert out["rmse"].item() == 0.0 and out["mae"].item() == 0.0 and out["relative"].item() == 0.0


def test_biased_model_has_equivariance_error_b_minus_rotated_b():
    # b(i, j) = j (an x ramp); rot90 gives (T b)(i, j) = W - 1 - i, so b - T b = i + j - 3 on a 4 x 4 grid.
    b = torch.arange(4.0).expand(4, 4).clone()
    history = torch.zeros(2, 3, 1, 4, 4)
    f_of_gx, g_of_fx = equivariance_pair(lambda x: last_frame(x) + b, history, rot90_scalar)
    i, j = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    torch.testing.assert_close(f_of_gx - g_of_fx, (i + j - 3).expand(2, 1, 4, 4))
    metric = EquivarianceError()
    metric.update(f_of_gx, g_of_fx)
    out = metric.compute()
    # sum over the grid of (i + j - 3)^2 = 40, of |i + j - 3| = 20, of (T b)^2 = 4 (0 + 1 + 4 + 9) = 56.
    assert out["rmse"].item() == pytest.approx(math.sqrt(40 / 16))
    assert out["mae"].item() == pytest.approx(20 / 16)
    assert out["relative"].item() == pytest.approx(math.sqrt(40 / 56))


def test_isotropic_convolution_is_equivariant_and_random_one_is_not():
    laplacian = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    random_kernel = torch.randn(1, 1, 3, 3, generator=torch.Generator().manual_seed(13))
    history = torch.randn(4, 2, 1, 16, 16, generator=torch.Generator().manual_seed(14))

    def relative_error(kernel: torch.Tensor) -> float:
        conv = torch.nn.Conv2d(1, 1, 3, padding=1, bias=False, padding_mode="circular")
        conv.weight.data.copy_(kernel)
        f_of_gx, g_of_fx = equivariance_pair(lambda x: conv(last_frame(x)), history, rot90_scalar)
        assert not f_of_gx.requires_grad and not g_of_fx.requires_grad
        metric = EquivarianceError()
        metric.update(f_of_gx, g_of_fx)
        return metric.compute()["relative"].item()

    assert relative_error(laplacian) < 1e-6
    assert relative_error(random_kernel) > 0.1


def test_equivariance_error_merge_state_equals_one_instance():
    g = torch.Generator().manual_seed(15)
    a, b = torch.randn(6, 2, 5, 5, generator=g), torch.randn(6, 2, 5, 5, generator=g)
    whole, left, right = EquivarianceError(), EquivarianceError(), EquivarianceError()
    whole.update(a, b)
    left.update(a[:1], b[:1])
    right.update(a[1:], b[1:])
    left.merge_state(right)
    for key in ("rmse", "mae", "relative"):
        torch.testing.assert_close(left.compute()[key], whole.compute()[key])


def test_relative_equivariance_error_is_measured_against_t_of_f_x():
    metric = EquivarianceError()
    metric.update(torch.full((2, 3), 3.0), torch.full((2, 3), 1.0))  # ||d|| / ||T f(x)|| = 2, not 2 / 3
    assert metric.compute()["relative"].item() == pytest.approx(2.0)


def test_data_equivariance_error_is_mean_absolute_difference():
    trajectory = torch.randn(2, 5, 1, 6, 6, generator=torch.Generator().manual_seed(16))
    assert data_equivariance_error(rot90_scalar(trajectory), rot90_scalar(trajectory.clone())).item() == 0.0
    shifted = trajectory + torch.tensor([0.5, -2.0]).view(2, 1, 1, 1, 1)
    assert data_equivariance_error(shifted, trajectory).item() == pytest.approx(1.25)


# --------------------------------------------------------------------------------------------- real DDP


def _ddp_worker(rank: int, world: int, init_file: str, results: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        g = torch.Generator().manual_seed(17)
        pred, target = torch.randn(5, 3, 2, 8, 8, generator=g), torch.randn(5, 3, 2, 8, 8, generator=g)
        rows = slice(0, 2) if rank == 0 else slice(2, 5)  # unequal shards: a mean of rank means would differ
        rmse, ese = RolloutRMSE(3), EnergySpectrumError()
        rmse.update(pred[rows], target[rows])
        ese.update(pred[rows], target[rows])
        results[rank] = (rmse.compute()["per_step"], ese.compute())
    finally:
        dist.destroy_process_group()


def test_metrics_sync_exactly_across_two_gloo_ranks(tmp_path):
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), results), nprocs=2, join=True)
        synced = dict(results)
    g = torch.Generator().manual_seed(17)
    pred, target = torch.randn(5, 3, 2, 8, 8, generator=g), torch.randn(5, 3, 2, 8, 8, generator=g)
    rmse, ese = RolloutRMSE(3), EnergySpectrumError()
    rmse.update(pred, target)
    ese.update(pred, target)
    for rank in (0, 1):
        torch.testing.assert_close(synced[rank][0], rmse.compute()["per_step"])
        torch.testing.assert_close(synced[rank][1], ese.compute())
