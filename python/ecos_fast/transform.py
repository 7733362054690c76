"""The feature transform (``normalize``) that the cloud, the client and both backends apply.

:func:`ecos_fast.fit_centroids` records it in the :class:`~ecos_fast.Centroids`;
:meth:`~ecos_fast.Centroids.transform` applies it to client and pool features, and the
Ray backend to every shard it reads, with this one function.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray

__all__ = ["NORMALIZE_CHOICES", "Normalize", "apply_normalize", "l2_normalize"]

Normalize = Literal["l2"] | None
NORMALIZE_CHOICES: tuple[str | None, ...] = (None, "l2")


def l2_normalize(x: NDArray[np.float32]) -> NDArray[np.float32]:
    """Rows scaled to unit L2 norm (all-zero rows stay zero); a new array.

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_features), float32

    Returns
    -------
    ndarray of shape (n_samples, n_features), float32, C-contiguous

    Examples
    --------
    >>> import numpy as np
    >>> from ecos_fast.transform import l2_normalize
    >>> l2_normalize(np.array([[3, 4], [0, 0]], np.float32)).tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(x / norms[:, None].astype(np.float32), dtype=np.float32)


def apply_normalize(x: NDArray[np.float32], normalize: str | None) -> NDArray[np.float32]:
    """``x`` under the transform ``normalize`` (None: ``x`` itself).

    Examples
    --------
    >>> import numpy as np
    >>> from ecos_fast.transform import apply_normalize
    >>> x = np.ones((1, 4), np.float32)
    >>> apply_normalize(x, None) is x, apply_normalize(x, "l2").tolist()
    (True, [[0.5, 0.5, 0.5, 0.5]])
    """
    return l2_normalize(x) if normalize == "l2" else x
