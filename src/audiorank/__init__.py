"""audiorank: embedding effective rank (RankMe) and power-law fits for audio representations.

The public contract (see DESIGN.md): `rankme`, `RankMe`, `fit_power_law`, `fit_scaling_law`.
"""

from .fit import Extrapolation, PowerLawFit, ScalingLawFit, fit_power_law, fit_scaling_law
from .rank import AlphaReq, RankMe, Spectrum, alpha_req, lidar, rankme, singular_values, stable_rank

__version__ = "0.1.0"

__all__ = [
    "AlphaReq",
    "Extrapolation",
    "PowerLawFit",
    "RankMe",
    "ScalingLawFit",
    "Spectrum",
    "alpha_req",
    "fit_power_law",
    "fit_scaling_law",
    "lidar",
    "rankme",
    "singular_values",
    "stable_rank",
]
