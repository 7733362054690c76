"""Differential-privacy calibration for the client's Centroid Coverage release.

The Gaussian mechanism's noise scale is calibrated with Google's
``dp-accounting`` (exact analytic Gaussian, Balle & Wang 2018), never with the
classic ``sqrt(2 ln(1.25/delta)) / epsilon`` bound (which is invalid for
epsilon > 1 and loose below). ``dp_accounting`` and SciPy are imported lazily
so that ``import ecos_fast`` stays light.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from ._validation import check_delta, check_epsilon, check_sensitivity
from .errors import PrivacyParameterError

__all__ = [
    "EPSILON_MAX",
    "RELATIONS",
    "GaussianMechanism",
    "Relation",
    "calibrate_gaussian_sigma",
    "sensitivity_for",
]

Relation = Literal["add_remove", "replace_one"]

#: L2 sensitivity of the nearest-centroid counts under each neighbouring relation:
#: adding/removing one sample changes one count by one; replacing one sample can
#: move one unit from one count to another.
RELATIONS: dict[str, float] = {"add_remove": 1.0, "replace_one": math.sqrt(2.0)}

# brentq's absolute tolerance inside dp_accounting's search for sigma.
_SIGMA_TOL = 1e-12

#: Largest finite epsilon calibrated. At 1e6 sigma is already 7e-4 of a count (a release
#: as good as noise-free), and further up dp_accounting's root finder fails outright
#: (at 1e200 and 1e300 SciPy stops with "function value is NaN"): ask for ``math.inf``
#: (no noise, no privacy) explicitly instead.
EPSILON_MAX = 1e6


def sensitivity_for(relation: Any) -> float:
    """L2 sensitivity of the Centroid Coverage counts under ``relation``.

    Parameters
    ----------
    relation : {"add_remove", "replace_one"}

    Returns
    -------
    float
        1 for ``"add_remove"``, sqrt(2) for ``"replace_one"``.

    Examples
    --------
    >>> from ecos_fast.privacy import sensitivity_for
    >>> sensitivity_for("add_remove"), round(sensitivity_for("replace_one"), 4)
    (1.0, 1.4142)
    """
    if not isinstance(relation, str) or relation not in RELATIONS:
        raise PrivacyParameterError(f"relation={relation!r} must be one of {sorted(RELATIONS)}")
    return RELATIONS[relation]


def calibrate_gaussian_sigma(epsilon: float, delta: float, sensitivity: float = 1.0) -> float:
    """Smallest Gaussian noise scale that makes a release (epsilon, delta)-DP.

    Parameters
    ----------
    epsilon : float
        In (0, :data:`EPSILON_MAX`] or ``math.inf``, which returns 0.0 (no noise; no
        privacy).
    delta : float
        In the open interval (0, 1).
    sensitivity : float, default 1.0
        L2 sensitivity of the released vector, > 0.

    Returns
    -------
    sigma : float
        ``sensitivity * dp_accounting.gaussian_mechanism.get_sigma_gaussian(epsilon,
        delta)``, rounded up by the root finder's tolerance so that the guarantee
        holds exactly rather than up to the search error.

    Notes
    -----
    Uses the exact analytic-Gaussian characterisation (Balle & Wang 2018): adding
    ``N(0, sigma^2 I)`` to a function of L2 sensitivity ``sensitivity`` satisfies
    (epsilon, delta)-differential privacy for one release. Several releases to the
    same data compose; account them with ``dp_accounting``'s accountants.

    Examples
    --------
    >>> from ecos_fast.privacy import calibrate_gaussian_sigma
    >>> round(calibrate_gaussian_sigma(0.58, 1e-5), 3)
    6.137
    >>> calibrate_gaussian_sigma(float("inf"), 1e-5)
    0.0
    """
    e = check_epsilon(epsilon)
    d = check_delta(delta)
    s = check_sensitivity(sensitivity)
    if math.isinf(e):
        return 0.0
    if e > EPSILON_MAX:
        raise PrivacyParameterError(
            f"epsilon={e:g} is above {EPSILON_MAX:g}, the largest finite epsilon calibrated "
            f"(sigma would be below 1e-3 of a count); use inf to release without noise"
        )
    from dp_accounting import gaussian_mechanism  # lazy: pulls in SciPy

    try:
        base = float(gaussian_mechanism.get_sigma_gaussian(e, d, tol=_SIGMA_TOL))
    except (ValueError, ArithmeticError, RuntimeError) as exc:
        raise PrivacyParameterError(
            f"cannot calibrate the Gaussian mechanism for epsilon={e:g}, delta={d:g}: {exc}"
        ) from None
    if not math.isfinite(base) or base <= 0:
        raise PrivacyParameterError(
            f"dp_accounting returned sigma={base} for epsilon={e}, delta={d}"
        )
    # brentq returns a root within xtol + 4 * machine-eps * |x|; err upwards.
    base += _SIGMA_TOL + 4 * 2.220446049250313e-16 * base
    return s * base


@dataclass(frozen=True, init=False)
class GaussianMechanism:
    """The calibrated Gaussian mechanism of one Centroid Coverage release.

    Building one *is* the calibration: ``sensitivity`` comes from ``relation``
    and ``sigma`` from :func:`calibrate_gaussian_sigma`, so every instance holds a
    sigma that makes the release (epsilon, delta)-DP. Calibrate once and hand the
    same object to whoever records the release (the ledger) and to
    :func:`ecos_fast.respond`, which draws the noise: both then hold the same
    sigma by construction. ``dataclasses.replace`` recalibrates (``sigma`` and
    ``sensitivity`` cannot be set by hand).

    Parameters
    ----------
    epsilon : float
        In (0, inf]; ``math.inf`` gives ``sigma=0`` (no noise, no privacy).
    delta : float
        In (0, 1).
    relation : {"add_remove", "replace_one"}, default "add_remove"
        Neighbouring relation; L2 sensitivity 1 or sqrt(2).

    Attributes
    ----------
    epsilon, delta : float
    relation : str
    sensitivity : float
    sigma : float
        Standard deviation of the noise added to every count.

    Raises
    ------
    PrivacyParameterError
        epsilon, delta or relation out of range.

    Examples
    --------
    >>> from ecos_fast.privacy import GaussianMechanism
    >>> m = GaussianMechanism(0.58, 1e-5, "replace_one")
    >>> round(m.sigma, 3), round(m.sensitivity, 4), m.mechanism
    (8.679, 1.4142, 'gaussian')
    >>> GaussianMechanism(float("inf"), 1e-5).mechanism
    'none'
    """

    epsilon: float
    delta: float
    relation: Relation = "add_remove"
    sensitivity: float = field(init=False)
    sigma: float = field(init=False)

    def __init__(self, epsilon: float, delta: float, relation: Relation = "add_remove") -> None:
        sensitivity = sensitivity_for(relation)
        sigma = calibrate_gaussian_sigma(epsilon, delta, sensitivity)  # validates epsilon, delta
        object.__setattr__(self, "epsilon", float(epsilon))
        object.__setattr__(self, "delta", float(delta))
        object.__setattr__(self, "relation", relation)
        object.__setattr__(self, "sensitivity", sensitivity)
        object.__setattr__(self, "sigma", sigma)

    @property
    def mechanism(self) -> Literal["gaussian", "none"]:
        """``"none"`` when ``epsilon`` is infinite (no noise), else ``"gaussian"``."""
        return "none" if self.sigma == 0 else "gaussian"
