"""Where the long kernels report their steps: one context-local callback.

The compiled core counts the steps of k-means (Lloyd iterations) and of greedy
K-Center (picks) and, while it runs, the calling thread wakes about every 40 ms to
run Python's signal handlers (Ctrl-C stops the kernel at its next check: a block
of 192 rows in an assignment pass, a k-means++ pick, a K-Center pick; then
``KeyboardInterrupt`` is raised) and, when a callback is set here, to pass it the
steps done so far. The callback sees every count the kernel reached by then (a
fast kernel may move several steps between two calls); the last call has the
final count. Nothing here changes a result.

>>> import numpy as np, ecos_fast
>>> from ecos_fast._progress import report_progress
>>> seen = []
>>> x = np.random.default_rng(0).normal(size=(200, 2)).astype(np.float32)
>>> with report_progress(lambda what, done, total: seen.append((what, done, total))):
...     km = ecos_fast.kmeans(x, 3, max_iter=5, tol=0.0)
>>> seen[-1] == ("k-means", km.n_iter, 5)
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["Hook", "kernel_callback", "report_progress"]

#: ``hook(what, done, total)``: ``what`` is "k-means" or "k-center".
Hook = Callable[[str, int, int], object]

_HOOK: ContextVar[Hook | None] = ContextVar("ecos_fast_progress", default=None)


@contextmanager
def report_progress(hook: Hook) -> Iterator[None]:
    """Send the steps of every kernel run inside the ``with`` block to ``hook``."""
    token = _HOOK.set(hook)
    try:
        yield
    finally:
        _HOOK.reset(token)


def kernel_callback(what: str, total: int) -> Callable[[int], object] | None:
    """The ``progress`` argument for one core call, or None when nobody listens."""
    hook = _HOOK.get()
    if hook is None:
        return None

    def callback(done: int) -> object:
        return hook(what, done, total)

    return callback
