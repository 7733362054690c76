"""The two ECOS roles over any message transport, without Flower (issue 15).

What travels is exactly the exchange file format (:mod:`ecos_fast.exchange`): the cloud's
centroid file bytes one way, the client's response file bytes back. Both are parsed and
verified by the same loaders the command line uses (header schema, checksum, fingerprint),
so a message holds nothing a file could not; with keys, the same Ed25519 signatures as the
files (:mod:`ecos_fast.signing`): the cloud signs its centroids, the client verifies them
with the cloud's public key and may sign its response.

:func:`answer` is the client's side, :func:`accept` checks one reply on the cloud's side,
:func:`union_response` is the federation mode's sum of noisy counts.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import (
    ExchangeFileError,
    InvalidInputError,
    InvalidTypeError,
    SketchMismatchError,
)
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


def centroids_to_bytes(centroids: Centroids, *, sign_key: Any = None) -> bytes:
    """The bytes :func:`ecos_fast.exchange.save_centroids` writes for ``centroids``.

    ``sign_key`` (a private key file from ``ecos-fast keygen``, or the key) signs them.

    Examples
    --------
    >>> import numpy as np, ecos_fast
    >>> from ecos_fast.flower import centroids_from_bytes, centroids_to_bytes
    >>> c = ecos_fast.Centroids(np.eye(2, dtype=np.float32))
    >>> centroids_from_bytes(centroids_to_bytes(c)).fingerprint == c.fingerprint
    True
    """
    return _roundtrip_bytes(lambda c, p: save_centroids(c, p, sign_key=sign_key), centroids)


def response_to_bytes(response: Response, *, sign_key: Any = None) -> bytes:
    """The bytes :func:`ecos_fast.exchange.save_response` writes for ``response``.

    ``sign_key`` (a private key file from ``ecos-fast keygen``, or the key) signs them.
    """
    return _roundtrip_bytes(lambda r, p: save_response(r, p, sign_key=sign_key), response)


def _as_file(data: object, what: str) -> tuple[tempfile.TemporaryDirectory[str], Path]:
    if not isinstance(data, (bytes, bytearray)):
        raise ExchangeFileError(
            f"{what}: expected the exchange file's bytes, got {type(data).__name__}"
        )
    d = tempfile.TemporaryDirectory(prefix="ecos-flower-")
    p = Path(d.name) / f"{what}.safetensors"
    p.write_bytes(bytes(data))
    return d, p


@contextmanager
def _parsed_as_file(data: object, what: str, name: str) -> Iterator[Path]:
    """``data`` written to a temporary file for the file loaders; their errors name the
    message (``name``) instead of that file, which is gone once they are raised."""
    d, p = _as_file(data, what)
    with d:
        try:
            yield p
        except ExchangeFileError as exc:
            msg = str(exc).replace(str(p), name).replace(d.name, name)
            raise type(exc)(msg) from None


def centroids_from_bytes(data: object, *, verify_key: Any = None) -> Centroids:
    """Parse and verify centroid file bytes, as :func:`load_centroids` does a file.

    With ``verify_key`` (the cloud's public key), the bytes must carry its signature.

    Raises
    ------
    ExchangeFileError
        Not bytes, or not a valid centroid file (truncated, corrupted, other schema).
    SignatureError
        With ``verify_key``: unsigned, signed by another key, or changed after signing.
    """
    with _parsed_as_file(data, "centroids", "centroid message") as p:
        return load_centroids(p, verify_key=verify_key)


def response_from_bytes(
    data: object, centroids: Centroids | None = None, *, verify_key: Any = None
) -> Response:
    """Parse and verify response file bytes; with ``centroids``, it must answer them.

    With ``verify_key`` (the client's public key), the bytes must carry its signature.

    Raises
    ------
    ExchangeFileError
        Not bytes, or not a valid response file.
    SketchMismatchError
        It answers other centroids.
    SignatureError
        With ``verify_key``: unsigned, signed by another key, or changed after signing.
    """
    with _parsed_as_file(data, "response", "response message") as p:
        return load_response(p, centroids=centroids, verify_key=verify_key)


@dataclass(frozen=True)
class ClientConfig:
    """What one client decides for itself: its data, its ledger, its privacy.

    Attributes
    ----------
    features : path, array-like of shape (n_private, n_features), or None
        The private features (a path is read with ``load_features``; its
        ``extractor.json`` sidecar, if any, gives the extractor fingerprint, as for
        ``ecos-fast respond``). None: compute them from ``images``.
    ledger : path
        The client's own SQLite ledger file (created if absent). Not ``":memory:"`` (nor
        ``""``): SQLite's in-memory database is a new one per query, so nothing would
        compose and the budget would never be enforced.
    epsilon, delta : float
        The (ε, δ) of one answer.
    budget_epsilon : float
        The ledger's budget for ``cloud``: once spent, the client refuses. Required (None
        is refused: it would answer without limit).
    cloud : str
        The name the ledger accounts the releases to (the client's, not the server's word).
    extractor_fingerprint : str, optional
        The client's extractor; must equal the one the centroids name, when both are set.
    relation : {"add_remove", "replace_one"}
    seed : int, optional
        Noise seed: reproducible tests only (a known seed lets anyone remove the noise).
    images : path or ndarray of shape (n_private, height, width, 3), dtype uint8, optional
        The client's raw images (a ``.npy`` path), when ``features`` is None: each query
        computes the features with the extractor the centroids name
        (:func:`ecos_fast.features.extract`), after checking its fingerprint.
    extractor : str or FeatureExtractor, optional
        With ``images``: the extractor to run (a bundled name such as ``"ppocr"``, or
        any :class:`~ecos_fast.features.FeatureExtractor`); its fingerprint must be the
        one the centroids carry. Default: the bundled extractor whose fingerprint the
        centroids carry (the cloud names it; none matching is a refusal).
    cloud_key : path or Ed25519PublicKey, optional
        The cloud's public key (its ``.pub`` file): the centroids must be signed by it.
    sign_key : path or Ed25519PrivateKey, optional
        The client's private key: the response bytes are signed with it.
    neighbours : int, default 1
        Count each private sample at its ``neighbours`` nearest centroids
        (:func:`ecos_fast.respond`); every client of one federated round must use the
        same (their counts are summed).
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
    images: Any = None
    extractor: Any = None
    cloud_key: Any = None
    sign_key: Any = None
    neighbours: int = 1

    def __post_init__(self) -> None:
        # A ledger that forgets, or no budget, would answer every query without limit.
        if isinstance(self.ledger, bool) or not isinstance(self.ledger, (str, os.PathLike)):
            raise InvalidTypeError(
                f"ClientConfig.ledger must be a path to the client's ledger file, got "
                f"{type(self.ledger).__name__} {self.ledger!r}"
            )
        if str(os.fspath(self.ledger)) in ("", ":memory:"):
            raise InvalidInputError(
                f"ClientConfig.ledger={self.ledger!r} is an in-memory SQLite database, a new "
                "one per query, so the budget would never be enforced: give a ledger file"
            )
        if self.budget_epsilon is None:
            raise InvalidInputError(
                "ClientConfig.budget_epsilon is None: the client would answer without limit; "
                "give the ledger's budget for this cloud"
            )


def _bundled_extractor_for(fingerprint: str) -> Any:
    """The bundled extractor whose fingerprint is ``fingerprint`` (the cloud's word)."""
    from .. import features

    tried = []
    for name in features.EXTRACTORS:
        try:
            ex = features.get_extractor(name)
            if ex.fingerprint == fingerprint:
                return ex
        except (ModuleNotFoundError, FileNotFoundError):  # its package is not installed
            continue
        tried.append(f"{name} {ex.fingerprint[:16]}…")
    raise SketchMismatchError(
        f"the centroids were fitted on features of extractor {fingerprint[:16]}…, which is "
        f"none of the bundled extractors installed here ({', '.join(tried) or 'none'}): "
        f"name the extractor (ClientConfig.extractor) or give the features"
    )


def _private_features(cents: Centroids, config: ClientConfig) -> tuple[Any, str | None]:
    """The client's features for ``cents`` and their extractor fingerprint (or None).

    From ``images``, the extractor is checked against the centroids' fingerprint before
    anything is computed.
    """
    from .. import features as feats_mod
    from ..feature_files import load_features

    if (config.features is None) == (config.images is None):
        raise InvalidInputError(
            "ClientConfig needs exactly one of features and images, got "
            f"{'both' if config.images is not None else 'neither'}"
        )
    if config.features is not None:
        x, fp = config.features, config.extractor_fingerprint
        if isinstance(x, (str, Path)):
            carried = feats_mod.read_fingerprint(x)  # the sidecar, as `respond` reads it
            if fp is not None and carried is not None and carried != fp:
                raise SketchMismatchError(
                    f"extractor_fingerprint={fp[:16]}… but {feats_mod.sidecar_path(x)} says the "
                    f"features come from extractor {carried[:16]}…"
                )
            fp = fp or carried
            x = load_features(x)
        return x, fp or getattr(x, "extractor_fingerprint", None)
    if cents.extractor_fingerprint is None:  # nothing to check the extractor against
        raise SketchMismatchError(
            "the centroids name no extractor (no extractor fingerprint), so the client "
            "cannot check that its features would come from the extractor the pool's came "
            "from: the cloud must sketch features that carry one, or give the features"
        )
    if config.extractor is not None:
        extractor = (
            feats_mod.get_extractor(config.extractor)
            if isinstance(config.extractor, str)
            else config.extractor
        )
        if not isinstance(extractor, feats_mod.FeatureExtractor):
            raise InvalidInputError(
                f"ClientConfig.extractor must be a bundled extractor name "
                f"({', '.join(feats_mod.EXTRACTORS)}) or a FeatureExtractor, got "
                f"{type(config.extractor).__name__}"
            )
    else:
        extractor = _bundled_extractor_for(cents.extractor_fingerprint)
    check_extractor(cents, extractor.fingerprint)  # before the images are even read
    images = config.images
    if isinstance(images, (str, Path)):
        try:
            images = np.load(images, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"{images}: cannot read the images ({exc})") from None
    computed = feats_mod.extract(extractor, images)
    return computed.array, computed.extractor_fingerprint


def answer(centroid_bytes: object, config: ClientConfig) -> bytes:
    """Client: the response file bytes for the received centroid file bytes.

    The centroids are verified (and their signature, with ``config.cloud_key``), the
    extractor fingerprint checked (the features' or, from ``config.images``, the
    extractor's, before it runs), then the release is checked against and recorded in
    the client's ledger before any noise is drawn
    (:func:`ecos_fast.ledger.respond_with_ledger`).

    Raises
    ------
    ExchangeFileError
        The bytes are not a valid centroid file.
    SignatureError
        ``config.cloud_key`` is set and the centroids do not carry its signature.
    KeyFileError
        ``config.sign_key`` cannot be loaded: checked before the ledger is touched.
    SketchMismatchError
        The extractor fingerprints differ, no extractor can be told apart for
        ``config.images``, or the features' width is not the centroids'.
    PrivacyBudgetExceededError
        The ledger's budget for ``config.cloud`` would be exceeded: nothing is released.

    Notes
    -----
    What leaves is one :func:`ecos_fast.respond` release: (``config.epsilon``,
    ``config.delta``)-DP under ``config.relation``, composed in the client's ledger
    with its earlier releases to ``config.cloud``. Nothing leaves on a refusal.

    Examples
    --------
    >>> import os, tempfile, numpy as np, ecos_fast
    >>> from ecos_fast.flower import ClientConfig, accept, answer, centroids_to_bytes
    >>> c = ecos_fast.Centroids(np.eye(2, dtype=np.float32))
    >>> ledger = os.path.join(tempfile.mkdtemp(), "ledger.sqlite")
    >>> cfg = ClientConfig(np.eye(2), ledger, epsilon=1.0, delta=1e-5, budget_epsilon=2.0)
    >>> accept(answer(centroids_to_bytes(c), cfg), c).n_clusters
    2
    """
    import warnings

    from ..errors import ExtractorUncheckedWarning
    from ..signing import load_signing_key

    cents = centroids_from_bytes(centroid_bytes, verify_key=config.cloud_key)
    # The key before the ledger: a key that cannot sign must not cost any budget.
    sign_key = None if config.sign_key is None else load_signing_key(config.sign_key)
    x, fp = _private_features(cents, config)
    check_extractor(cents, fp)  # raises on a mismatch
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
                neighbours=config.neighbours,
            )
    return response_to_bytes(resp, sign_key=sign_key)


def accept(reply: object, centroids: Centroids, *, verify_key: Any = None) -> Response:
    """Cloud: the client's reply as a :class:`Response` to ``centroids``, or why not.

    Raises
    ------
    ExchangeFileError
        Garbage: not the bytes of a valid response file.
    SketchMismatchError
        A valid response, but to other centroids.
    SignatureError
        With ``verify_key``: not signed by that key.
    InvalidTypeError
        ``centroids`` is not a :class:`Centroids` (None included: to parse a reply
        without checking what it answers, use :func:`response_from_bytes`).
    """
    if not isinstance(centroids, Centroids):
        raise InvalidTypeError(
            f"accept needs the centroids the reply must answer, got centroids of type "
            f"{type(centroids).__name__} (response_from_bytes parses without them)"
        )
    return response_from_bytes(reply, centroids=centroids, verify_key=verify_key)


def union_response(responses: Iterable[Response]) -> Response:
    """Federation mode: one release from the sum of several clients' noisy counts.

    The sum of independent Gaussian releases is a Gaussian release of the summed true
    counts with ``sigma = sqrt(sum sigma_i^2)``; it is post-processing of the clients'
    releases, so each client's guarantee stays its own (ε_i, δ_i). The returned
    ``epsilon``/``delta`` are the largest of the clients' (the weakest guarantee any
    client gave), used only for the header: selection reads ``sigma``.

    ``responses`` may be any iterable of :class:`Response` (a list, a generator, a dict's
    values).

    Raises
    ------
    InvalidInputError
        No responses, or they answer different centroids, use different relations or
        count at different numbers of neighbours.
    InvalidTypeError
        ``responses`` is not an iterable (or is a str or bytes), or holds something that
        is not a Response (reply bytes: :func:`accept` them first).
    """
    if isinstance(responses, (str, bytes, bytearray)) or not isinstance(responses, Iterable):
        raise InvalidTypeError(
            f"responses must be an iterable of Response, got {type(responses).__name__}"
        )
    responses = list(responses)
    for i, r in enumerate(responses):
        if not isinstance(r, Response):
            raise InvalidTypeError(
                f"responses[{i}] is {type(r).__name__}, not a Response"
                + (" (accept the reply bytes first)" if isinstance(r, (bytes, bytearray)) else "")
            )
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
        if r.neighbours != first.neighbours:
            raise InvalidInputError(
                f"the responses count at different numbers of neighbours "
                f"({first.neighbours}, {r.neighbours}): their counts do not add up"
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
        neighbours=first.neighbours,
    )
