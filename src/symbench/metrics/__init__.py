"""Evaluation metrics: rollout RMSE, energy spectrum error, equivariance error, thermal-energy L1.

All metrics are torchmetrics ``Metric``s whose states are sums reduced by ``sum``, so they are exact under DDP.
"""

from symbench.metrics.energy import ThermalEnergyL1
from symbench.metrics.equivariance import EquivarianceError, data_equivariance_error, equivariance_pair
from symbench.metrics.rmse import RolloutRMSE
from symbench.metrics.spectrum import EnergySpectrumError, radial_energy_spectrum, turbulent_energy_spectrum

__all__ = [
    "EnergySpectrumError",
    "EquivarianceError",
    "RolloutRMSE",
    "ThermalEnergyL1",
    "data_equivariance_error",
    "equivariance_pair",
    "radial_energy_spectrum",
    "turbulent_energy_spectrum",
]
