"""The two ECOS roles over any message transport, without Flower (issue 15).

What travels is exactly the exchange file format (:mod:`ecos_fast.exchange`): the cloud's
centroid file bytes one way, the client's response file bytes back. Both are parsed and
verified by the same loaders the command line uses (header schema, checksum, fingerprint),
so a message holds nothing a file could not.

:func:`answer` is the client's side, :func:`accept` checks one reply on the cloud's side,
:func:`union_response` is the federation mode's sum of noisy counts.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import ExchangeFileError, InvalidInputError, SketchMismatchError
from ..exchange import load_centroids, load_response, save_centroids, save_response
from ..ledger import Ledger, respond_with_ledger
from ..protocol import Centroids, Response, check_extractor

__all__ = [
    "ClientConfig",
    "accept",
    "answer",
    "centroids_from_bytes",
    "centroids_to_bytes",
    "response_from_bytes",
    "response_to_bytes",
    "union_response",
]


def _roundtrip_bytes(save: Any, obj: Any) -> bytes:
    with tempfile.TemporaryDirectory(prefix="ecos-flower-") as d:
        p = Path(d) / "x.safetensors"
        save(obj, p)
        return p.read_bytes()


def centroids_to_bytes(centroids: Centroids) -> bytes:
    """The bytes :func:`ecos_fast.exchange.save_centroids` writes for ``centroids``."""
    return _roundtrip_bytes(save_centroids, centroids)


def response_to_bytes(response: Response) -> bytes:
    """The bytes :func:`ecos_fast.exchange.save_response` writes for ``response``."""
    return _roundtrip_bytes(save_response, response)


def _as_file(data: object, what: str) -> tuple[tempfile.TemporaryDirectory[str], Path]:
    if not isinstance(data, (bytes, bytearray)):
        raise ExchangeFileError(
            f"{what}: expected the exchange file's bytes, got {type(data).__name__}"
        )
    d = tempfile.TemporaryDirectory(prefix="ecos-flower-")
    p = Path(d.name) / f"{what}.safetensors"
    p.write_bytes(bytes(data))
    return d, p


def centroids_from_bytes(data: object) -> Centroids:
    """Parse and verify centroid file bytes, as :func:`load_centroids` does a file.

    Raises
    ------
    ExchangeFileError
        Not bytes, or not a valid centroid file (truncated, corrupted, other schema).
    """
    d, p = _as_file(data, "centroids")
    with d:
        return load_centroids(p)


def response_from_bytes(data: object, centroids: Centroids | None = None) -> Response:
    """Parse and verify response file bytes; with ``centroids``, it must answer them.

    Raises
    ------
    ExchangeFileError
        Not bytes, or not a valid response file.
    SketchMismatchError
        It answers other centroids.
    """
    d, p = _as_file(data, "response")
    with d:
        return load_response(p, centroids=centroids)


@dataclass(frozen=True)
class ClientConfig:
    """What one client decides for itself: its data, its ledger, its privacy.

    Attributes
    ----------
    features : path or array-like of shape (n_private, n_features)
        The private features (a path is read with ``load_features``).
    ledger : path
        The client's own SQLite ledger (created if absent).
    epsilon, delta : float
        The (ε, δ) of one answer.
    budget_epsilon : float
        The ledger's budget for ``cloud``: once spent, the client refuses.
    cloud : str
        The name the ledger accounts the releases to (the client's, not the server's word).
    extractor_fingerprint : str, optional
        The client's extractor; must equal the one the centroids name, when both are set.
    relation : {"add_remove", "replace_one"}
    seed : int, optional
        Noise seed: reproducible tests only (a known seed lets anyone remove the noise).
    """

    features: Any
    ledger: str | Path
    epsilon: float
    delta: float
    budget_epsilon: float
    cloud: str = "default"
    extractor_fingerprint: str | None = None
    relation: Literal["add_remove", "replace_one"] = "add_remove"
    seed: int | None = None


def answer(centroid_bytes: object, config: ClientConfig) -> bytes:
    """Client: the response file bytes for the received centroid file bytes.

    The centroids are verified, the extractor fingerprint checked, then the release is
    checked against and recorded in the client's ledger before any noise is drawn
    (:func:`ecos_fast.ledger.respond_with_ledger`).

    Raises
    ------
    ExchangeFileError
        The bytes are not a valid centroid file.
    SketchMismatchError
        The extractor fingerprints differ, or the features' width is not the centroids'.
    PrivacyBudgetExceededError
        The ledger's budget for ``config.cloud`` would be exceeded: nothing is released.
    """
    import warnings

    from ..errors import ExtractorUncheckedWarning
    from ..feature_files import load_features

    cents = centroids_from_bytes(centroid_bytes)
    check_extractor(cents, config.extractor_fingerprint)  # raises on a mismatch
    x = config.features
    if isinstance(x, (str, Path)):
        x = load_features(x)
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != cents.n_features:
        raise SketchMismatchError(
            f"the private features have shape {x.shape} but the centroids have "
            f"n_features={cents.n_features}"
        )
    with Ledger(config.ledger, budget_epsilon=config.budget_epsilon) as ledger:
        with warnings.catch_warnings():  # checked above, or neither side named one
            warnings.simplefilter("ignore", ExtractorUncheckedWarning)
            resp = respond_with_ledger(
                x,
                cents,
                config.epsilon,
                config.delta,
                ledger,
                cloud=config.cloud,
                relation=config.relation,
                seed=config.seed,
            )
    return response_to_bytes(resp)


def accept(reply: object, centroids: Centroids) -> Response:
    """Cloud: the client's reply as a :class:`Response` to ``centroids``, or why not.

    Raises
    ------
    ExchangeFileError
        Garbage: not the bytes of a valid response file.
    SketchMismatchError
        A valid response, but to other centroids.
    """
    return response_from_bytes(reply, centroids=centroids)


def union_response(responses: list[Response]) -> Response:
    """Federation mode: one release from the sum of several clients' noisy counts.

    The sum of independent Gaussian releases is a Gaussian release of the summed true
    counts with ``sigma = sqrt(sum sigma_i^2)``; it is post-processing of the clients'
    releases, so each client's guarantee stays its own (ε_i, δ_i). The returned
    ``epsilon``/``delta`` are the largest of the clients' (the weakest guarantee any
    client gave), used only for the header: selection reads ``sigma``.

    Raises
    ------
    InvalidInputError
        No responses, or they answer different centroids or use different relations.
    """
    if not responses:
        raise InvalidInputError("union_response needs at least one response")
    first = responses[0]
    for r in responses[1:]:
        if r.centroids_fingerprint != first.centroids_fingerprint:
            raise InvalidInputError("the responses answer different centroids")
        if r.relation != first.relation:
            raise InvalidInputError(
                f"the responses use different relations ({first.relation!r}, {r.relation!r})"
            )
    counts = np.sum([r.noisy_counts for r in responses], axis=0)
    sigma = math.sqrt(sum(r.sigma**2 for r in responses))
    return Response(
        noisy_counts=counts,
        epsilon=max(r.epsilon for r in responses),
        delta=max(r.delta for r in responses),
        sigma=sigma,
        sensitivity=first.sensitivity,
        relation=first.relation,
        mechanism=first.mechanism,
        centroids_fingerprint=first.centroids_fingerprint,
    )
