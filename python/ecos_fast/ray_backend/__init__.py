"""Scale-out backend: the cloud-side steps on a pool that outgrows one machine, on Ray.

Every worker runs the same Rust kernels as the local backend on its shards
(``ecos_fast._core``) and the same rule (:mod:`ecos_fast.rule`); the driver only
reduces. The result is the local backend's, bit for bit, for any number of
workers and any sharding (``select(..., within="kcenter", kcenter="coreset")``
aside, which trades that for less data moved).

- :mod:`~ecos_fast.ray_backend.pool`: Ray start-up, shard readers, :class:`ShardedPool`;
- :mod:`~ecos_fast.ray_backend.tasks`: the worker functions;
- :mod:`~ecos_fast.ray_backend.kmeans`: distributed k-means and assignment;
- :mod:`~ecos_fast.ray_backend.select`: distributed select.

The package imports only the layers below the public API (the rule, validation,
clustering, feature files, the compiled core); public functions reach it through
``backend="ray"`` (:mod:`ecos_fast._backend`). Ray itself is imported on first
use: ``import ecos_fast`` never imports it.
"""

from __future__ import annotations

from .kmeans import assign_sharded, kmeans_sharded
from .pool import RunStats, ShardedPool
from .select import KCENTER_MODES, select_sharded
from .tasks import gather_rows

__all__ = [
    "KCENTER_MODES",
    "RunStats",
    "ShardedPool",
    "assign_sharded",
    "gather_rows",
    "kmeans_sharded",
    "select_sharded",
]
