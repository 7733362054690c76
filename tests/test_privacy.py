"""Gaussian-mechanism calibration and the client's noisy release."""

from __future__ import annotations

import math

import ecos_fast
import numpy as np
import pytest
from dp_accounting import gaussian_mechanism
from ecos_fast import reference
from ecos_fast.errors import InvalidTypeError, PrivacyParameterError
from ecos_fast.privacy import calibrate_gaussian_sigma, sensitivity_for

GRID = [(0.05, 1e-5), (0.58, 1e-5), (1.0, 1e-6), (3.0, 1e-5), (8.0, 1e-3), (0.3, 0.2)]


@pytest.mark.parametrize(("epsilon", "delta"), GRID)
def test_sigma_is_dp_accountings(epsilon: float, delta: float) -> None:
    want = gaussian_mechanism.get_sigma_gaussian(epsilon, delta)
    got = calibrate_gaussian_sigma(epsilon, delta)
    assert got == pytest.approx(want, rel=1e-9)
    assert got >= want  # rounded towards more noise, never less
    # The guarantee holds: the sigma we return buys at most epsilon.
    assert gaussian_mechanism.get_epsilon_gaussian(got, delta) <= epsilon * (1 + 1e-9)


@pytest.mark.parametrize("sensitivity", [0.5, 1.0, math.sqrt(2), 7.0])
def test_sigma_scales_with_sensitivity(sensitivity: float) -> None:
    base = calibrate_gaussian_sigma(0.58, 1e-5)
    assert calibrate_gaussian_sigma(0.58, 1e-5, sensitivity) == pytest.approx(
        sensitivity * base, rel=1e-12
    )


def test_anchor_and_not_the_classic_formula() -> None:
    # docs/anchors.md: exact analytic Gaussian gives 6.137 at (0.58, 1e-5).
    assert calibrate_gaussian_sigma(0.58, 1e-5) == pytest.approx(6.137, abs=1e-3)
    for eps in (0.5, 2.0, 5.0):
        classic = math.sqrt(2 * math.log(1.25 / 1e-5)) / eps
        assert calibrate_gaussian_sigma(eps, 1e-5) < classic  # analytic is tighter


def test_infinite_epsilon_means_no_noise() -> None:
    assert calibrate_gaussian_sigma(math.inf, 1e-5) == 0.0


@pytest.mark.parametrize(
    ("epsilon", "delta", "sensitivity", "match"),
    [
        (0.0, 1e-5, 1.0, "epsilon=0.0"),
        (-1.0, 1e-5, 1.0, "epsilon=-1.0"),
        (math.nan, 1e-5, 1.0, "epsilon=nan"),
        (1.0, 0.0, 1.0, "delta=0.0"),
        (1.0, 1.0, 1.0, "delta=1.0"),
        (1.0, -0.1, 1.0, "delta=-0.1"),
        (1.0, math.nan, 1.0, "delta=nan"),
        (1.0, 1e-5, 0.0, "sensitivity=0.0"),
        (1.0, 1e-5, math.inf, "sensitivity=inf"),
        (True, 1e-5, 1.0, "epsilon must be a number"),
        ("1", 1e-5, 1.0, "epsilon must be a number"),
    ],
)
def test_bad_privacy_parameters(
    epsilon: object, delta: object, sensitivity: object, match: str
) -> None:
    with pytest.raises(PrivacyParameterError, match=match):
        calibrate_gaussian_sigma(epsilon, delta, sensitivity)  # type: ignore[arg-type]


def test_relations() -> None:
    assert sensitivity_for("add_remove") == 1.0
    assert sensitivity_for("replace_one") == math.sqrt(2)
    with pytest.raises(PrivacyParameterError, match="relation='swap'"):
        sensitivity_for("swap")


def _cents(r: int = 4, d: int = 3) -> ecos_fast.Centroids:
    rng = np.random.default_rng(1)
    return ecos_fast.Centroids(rng.normal(0, 5, (r, d)).astype(np.float32))


def test_response_records_parameters_and_no_private_data() -> None:
    cents = _cents()
    x = np.random.default_rng(2).normal(0, 5, (50, 3)).astype(np.float32)
    r = ecos_fast.respond(x, cents, 0.58, 1e-5, relation="replace_one", seed=3)
    assert r.sigma == pytest.approx(calibrate_gaussian_sigma(0.58, 1e-5, math.sqrt(2)))
    assert (r.epsilon, r.delta, r.relation, r.mechanism) == (0.58, 1e-5, "replace_one", "gaussian")
    assert r.sensitivity == math.sqrt(2)
    assert r.n_clusters == 4 and r.centroids_fingerprint == cents.fingerprint
    assert r.noisy_counts.dtype == np.float64 and not r.noisy_counts.flags.writeable
    # Only the noisy counts and public parameters: no field holds a private-sized array.
    fields = {f for f in vars(r)}
    assert fields == {
        "noisy_counts", "epsilon", "delta", "sigma", "sensitivity", "relation",
        "mechanism", "centroids_fingerprint", "schema_version", "neighbours",
    }  # fmt: skip
    assert r.neighbours == 1
    true = np.bincount(reference.assign(x, cents.centroids)[0], minlength=4)
    assert not np.allclose(r.noisy_counts, true)
    assert "Notes" in (ecos_fast.respond.__doc__ or "")
    assert "differentially private" in (ecos_fast.respond.__doc__ or "")


def test_infinite_epsilon_gives_true_counts() -> None:
    cents = _cents()
    x = np.random.default_rng(2).normal(0, 5, (50, 3)).astype(np.float32)
    r = ecos_fast.respond(x, cents, math.inf, 1e-5)
    true = np.bincount(reference.assign(x, cents.centroids)[0], minlength=4)
    np.testing.assert_array_equal(r.noisy_counts, true)
    assert (r.sigma, r.mechanism) == (0.0, "none")


def test_noise_std_matches_sigma() -> None:
    # 20000 noise draws: 10 responses over 2000 clusters. The relative standard
    # error of a sample std is ~0.5 % here, so 3 % only fails if sigma is wrong.
    r_clusters, d = 2000, 2
    cents = ecos_fast.Centroids(
        np.stack([np.arange(r_clusters) * 10.0, np.zeros(r_clusters)], axis=1).astype(np.float32)
    )
    x = np.zeros((5, d), dtype=np.float32)
    true = np.zeros(r_clusters)
    true[0] = 5
    eps, delta = 1.0, 1e-5
    noise = np.concatenate(
        [ecos_fast.respond(x, cents, eps, delta, seed=s).noisy_counts - true for s in range(10)]
    )
    sigma = calibrate_gaussian_sigma(eps, delta)
    assert noise.size == 20000
    assert np.std(noise) == pytest.approx(sigma, rel=0.03)
    assert abs(np.mean(noise)) < 4 * sigma / math.sqrt(noise.size)


def test_seed_reproducible_and_default_fresh() -> None:
    cents = _cents()
    x = np.ones((10, 3), dtype=np.float32)
    a = ecos_fast.respond(x, cents, 1.0, 1e-5, seed=7).noisy_counts
    b = ecos_fast.respond(x, cents, 1.0, 1e-5, seed=7).noisy_counts
    c = ecos_fast.respond(x, cents, 1.0, 1e-5, seed=8).noisy_counts
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    u = ecos_fast.respond(x, cents, 1.0, 1e-5).noisy_counts
    v = ecos_fast.respond(x, cents, 1.0, 1e-5).noisy_counts
    assert not np.array_equal(u, v)


def test_respond_rejects_bad_input() -> None:
    cents = _cents()
    x = np.ones((10, 3), dtype=np.float32)
    with pytest.raises(PrivacyParameterError, match=r"epsilon=0\.0"):
        ecos_fast.respond(x, cents, 0.0, 1e-5)
    with pytest.raises(PrivacyParameterError, match=r"delta=1\.5"):
        ecos_fast.respond(x, cents, 1.0, 1.5)
    with pytest.raises(PrivacyParameterError, match="relation="):
        ecos_fast.respond(x, cents, 1.0, 1e-5, relation="nope")  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError, match="Centroids"):
        ecos_fast.respond(x, cents.centroids, 1.0, 1e-5)  # type: ignore[arg-type]
    with pytest.raises(ecos_fast.InvalidInputError, match="n_features=4"):
        ecos_fast.respond(np.ones((10, 4)), cents, 1.0, 1e-5)
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ecos_fast.InvalidInputError, match=r"non-finite.*row 3"):
        ecos_fast.respond(bad, cents, 1.0, 1e-5)
    with pytest.raises(ecos_fast.InvalidInputError, match="ndim=1"):
        ecos_fast.respond(np.ones(3), cents, 1.0, 1e-5)
    with pytest.raises(ecos_fast.InvalidInputError, match="empty"):
        ecos_fast.respond(np.ones((0, 3)), cents, 1.0, 1e-5)
    with pytest.raises(ecos_fast.InvalidTypeError, match="dtype"):
        ecos_fast.respond(np.ones((2, 3), dtype=complex), cents, 1.0, 1e-5)


def test_response_validates_consistency() -> None:
    fp = "0" * 64
    ok = {
        "noisy_counts": np.zeros(3), "epsilon": 1.0, "delta": 1e-5, "sigma": 4.0, "sensitivity": 1.0,
        "relation": "add_remove", "mechanism": "gaussian", "centroids_fingerprint": fp,
    }  # fmt: skip
    ecos_fast.Response(**ok)  # type: ignore[arg-type]
    for change, match in [
        ({"sigma": 0.0}, "sigma=0.0 is inconsistent"),
        ({"mechanism": "none"}, "mechanism='none'"),
        ({"sensitivity": 2.0}, "sensitivity=2.0"),
        ({"centroids_fingerprint": "xyz"}, "64 hex"),
        ({"noisy_counts": np.array([0.0, np.inf, 1.0])}, "non-finite"),
        ({"epsilon": math.inf}, "mechanism='gaussian'"),
    ]:
        with pytest.raises(ecos_fast.EcosError, match=match):
            ecos_fast.Response(**{**ok, **change})  # type: ignore[arg-type,dict-item]


@pytest.mark.parametrize(
    ("epsilon", "relation"), [(0.58, "add_remove"), (2.0, "replace_one"), (math.inf, "add_remove")]
)
def test_gaussian_mechanism_is_the_calibration(epsilon: float, relation: str) -> None:
    import dataclasses

    from ecos_fast.privacy import GaussianMechanism

    m = GaussianMechanism(epsilon, 1e-5, relation)  # type: ignore[arg-type]
    sens = sensitivity_for(relation)
    assert (m.sensitivity, m.sigma) == (sens, calibrate_gaussian_sigma(epsilon, 1e-5, sens))
    assert m.mechanism == ("none" if math.isinf(epsilon) else "gaussian")
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.sigma = 0.1  # type: ignore[misc]
    with pytest.raises(ValueError, match="sigma"):
        dataclasses.replace(m, sigma=0.1)
    wider = dataclasses.replace(m, delta=1e-3)  # recalibrated, not copied
    assert wider.sigma == calibrate_gaussian_sigma(epsilon, 1e-3, sens)
    for bad, match in [((0.0, 1e-5), "epsilon=0.0"), ((1.0, 2.0), "delta=2.0")]:
        with pytest.raises(PrivacyParameterError, match=match):
            GaussianMechanism(*bad)
    with pytest.raises(PrivacyParameterError, match="relation='nope'"):
        GaussianMechanism(1.0, 1e-5, "nope")  # type: ignore[arg-type]


def test_respond_with_a_calibrated_mechanism() -> None:
    from ecos_fast.privacy import GaussianMechanism

    cents = _cents()
    x = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    m = GaussianMechanism(0.58, 1e-5, "replace_one")
    got = ecos_fast.respond(x, cents, 0.58, 1e-5, relation="replace_one", mechanism=m, seed=4)
    want = ecos_fast.respond(x, cents, 0.58, 1e-5, relation="replace_one", seed=4)
    np.testing.assert_array_equal(got.noisy_counts, want.noisy_counts)
    assert (got.sigma, got.sensitivity, got.mechanism) == (m.sigma, m.sensitivity, "gaussian")
    with pytest.raises(PrivacyParameterError, match=r"calibrated for epsilon=0.58.*epsilon=1.0"):
        ecos_fast.respond(x, cents, 1.0, 1e-5, relation="replace_one", mechanism=m)
    with pytest.raises(PrivacyParameterError, match="relation='add_remove'"):
        ecos_fast.respond(x, cents, 0.58, 1e-5, mechanism=m)
    with pytest.raises(InvalidTypeError, match="GaussianMechanism, got float"):
        ecos_fast.respond(x, cents, 0.58, 1e-5, mechanism=6.0)  # type: ignore[arg-type]
