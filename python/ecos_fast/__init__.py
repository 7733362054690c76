"""ecos-fast: train for a client without uploading its data (ECOS, NeurIPS 2022).

The protocol in three calls (see ``docs/method.md``)::

    centroids = ecos_fast.fit_centroids(pool, n_clusters=100)         # cloud
    response = ecos_fast.respond(private, centroids, epsilon, delta)   # client
    selection = ecos_fast.select(pool, ecos_fast.Sketch.join(centroids, response), budget)

Heavy dependencies (dp-accounting/SciPy, safetensors, jsonschema) are imported
only by the functions that need them.
"""

from __future__ import annotations

from ._core import __version__  # Cargo.toml's version, compiled into the core
from .baselines import select_kcenter, select_random
from .clustering import KMeansResult
from .errors import (
    BudgetError,
    BudgetShortfallWarning,
    EcosError,
    EcosWarning,
    EnvironmentSettingError,
    ExchangeFileError,
    ExtractorUncheckedWarning,
    FeatureFileError,
    FederationError,
    InvalidInputError,
    InvalidTypeError,
    KeyFileError,
    LedgerError,
    LedgerRelationError,
    LowSignalWarning,
    MissingDependencyError,
    NoCoverageError,
    NoNoiseReleaseError,
    PrivacyBudgetExceededError,
    PrivacyParameterError,
    SelectionIndexError,
    SignatureError,
    SketchMismatchError,
    ThreadPoolError,
    ThreadsCappedWarning,
)
from .exchange import load_centroids, load_response, save_centroids, save_response
from .kernels import assign, kcenter_greedy, kmeans
from .privacy import calibrate_gaussian_sigma
from .protocol import SCHEMA_VERSION, Centroids, Response, Sketch, fit_centroids, respond
from .quotas import allocate_quotas
from .rule import Selection, suggest_n_clusters, suggest_neighbours
from .selection import select

__all__ = [
    "SCHEMA_VERSION",
    "BudgetError",
    "BudgetShortfallWarning",
    "Centroids",
    "EcosError",
    "EcosWarning",
    "EnvironmentSettingError",
    "ExchangeFileError",
    "ExtractorUncheckedWarning",
    "FeatureFileError",
    "FederationError",
    "InvalidInputError",
    "InvalidTypeError",
    "KMeansResult",
    "KeyFileError",
    "LedgerError",
    "LedgerRelationError",
    "LowSignalWarning",
    "MissingDependencyError",
    "NoCoverageError",
    "NoNoiseReleaseError",
    "PrivacyBudgetExceededError",
    "PrivacyParameterError",
    "Response",
    "Selection",
    "SelectionIndexError",
    "SignatureError",
    "Sketch",
    "SketchMismatchError",
    "ThreadPoolError",
    "ThreadsCappedWarning",
    "__version__",
    "allocate_quotas",
    "assign",
    "calibrate_gaussian_sigma",
    "fit_centroids",
    "kcenter_greedy",
    "kmeans",
    "load_centroids",
    "load_response",
    "respond",
    "save_centroids",
    "save_response",
    "select",
    "select_kcenter",
    "select_random",
    "suggest_n_clusters",
    "suggest_neighbours",
]
