"""Compiled kernels of cascade_routing (C++17, pybind11): the private backend ``cpp``.

Users import :mod:`cascade_routing`, never this module. The functions have exactly the
positional arguments and results of the NumPy reference kernels in
``cascade_routing._reference`` (``cholesky_psd``, ``search_kernel``, ``search_batch_kernel``,
``replay_two_phase_kernel``) and agree with them bit for bit (the mean over samples uses
NumPy's pairwise summation).

Every kernel ends with the quality bounds ``lower``, ``upper`` (default ``-inf`` / ``inf``: no
bound; ``lower < upper`` is required, ValueError otherwise): each quality sample (mode 0: each
mean) is clipped to ``[lower, upper]`` as soon as it is computed. ``n_threads`` is keyword-only.

Arrays are taken as they are, never copied: they must be NumPy arrays of the stated dtype
(``TypeError`` otherwise; masks may be ``uint8`` or ``bool``), C-contiguous and aligned, of the
stated shape, with finite values (``ValueError`` otherwise). Arrays that the chosen mode does
not use (``sd`` outside mode 1, ``chol`` outside mode 2, ``normals`` in mode 0, ``thresholds``
with strategy 0, ...) are not inspected. Batched functions release the GIL and split their
rows over ``n_threads`` threads (0 = one per core); their results do not depend on it.
``n_threads`` is an int in ``0..MAX_THREADS`` (TypeError / ValueError otherwise); the threads
actually started are capped at the cores available (:func:`threads_used`).

Ctrl-C: a call long enough to release the GIL (every batch and replay, and a single search of
more than a few thousand candidates x samples) takes the GIL back every 20 ms in the main thread
to run Python's signal handlers; if one raises (KeyboardInterrupt for SIGINT), the kernel stops
within a few thousand candidates and the exception propagates. No output is returned then.
"""

from typing import Final

import numpy as np
from numpy.typing import NDArray

#: The largest number of models (a supermodel is a 64-bit mask).
MAX_MODELS: Final[int]
#: Absolute slack, relative to the scale of the values, that pruning leaves for rounding error.
PRUNE_SLACK: Final[float]
#: The largest ``n_threads`` accepted (ValueError above); the threads used are fewer.
MAX_THREADS: Final[int]

def threads_used(n_threads: int, n_rows: int) -> int:
    """Threads a batch of ``n_rows`` rows runs on when ``n_threads`` are asked for.

    At most one per core (``std::thread::hardware_concurrency``; ``0`` asks for exactly that)
    and at most one per row: more would only cost thread starts and workspaces.
    """

def cholesky_psd(cov: NDArray[np.float64]) -> NDArray[np.float64]:
    """Lower Cholesky factor of a positive semi-definite matrix.

    Parameters
    ----------
    cov : ndarray of float64, shape (k, k)
        Symmetric positive semi-definite matrix (finite).

    Returns
    -------
    ndarray of float64, shape (k, k)
        Lower factor ``L`` with ``L @ L.T == cov``; a non-positive pivot gives a zero column.
    """

def search(
    quality: NDArray[np.float64],
    cost: NDArray[np.float64],
    lam: float,
    mode: int,
    sd: NDArray[np.float64],
    chol: NDArray[np.float64],
    normals: NDArray[np.float64],
    ran: NDArray[np.uint8] | NDArray[np.bool_],
    max_depth: int,
    force_order: bool,
    prefixes_only: bool,
    prune: bool,
    prefer_expensive: bool,
    digits: int,
    lower: float = ...,
    upper: float = ...,
) -> tuple[int, NDArray[np.uint8], float, float, float, int]:
    """Best supermodel ``M ⊇ ran`` of one query (see ``_reference.search_kernel``).

    Parameters
    ----------
    quality, cost : ndarray of float64, shape (k,)
        Quality and cost estimates of the ``k`` models, ``1 <= k <= MAX_MODELS``.
    lam : float
        Cost multiplier.
    mode : int
        0 = exact means, 1 = independent (``sd``), 2 = full covariance (``chol``).
    sd : ndarray of float64, shape (k,)
        Standard deviations (mode 1 only).
    chol : ndarray of float64, shape (k, k)
        Lower Cholesky factor of the covariance (mode 2 only).
    normals : ndarray of float64, shape (n_samples, k)
        Standard-normal samples, ``n_samples >= 1`` (modes 1 and 2 only).
    ran : ndarray of uint8 or bool, shape (k,)
        Nonzero for the models already run.
    max_depth : int
        Largest supermodel size, run models included.
    force_order, prefixes_only, prune, prefer_expensive : bool
        Search options (see :func:`cascade_routing.search_supermodel`).
    digits : int
        Round utilities to this many decimals (0..15) before comparing; -1 = no rounding.
    lower, upper : float
        Quality bounds, ``lower < upper``: every sample (mode 0: every mean) is clipped to
        ``[lower, upper]``; ``-inf`` / ``inf`` (the defaults) mean no bound.

    Returns
    -------
    tuple
        ``(next_model, mask, utility, quality, cost, evaluated)``; ``next_model`` is -1 to stop,
        ``mask`` a uint8 array of shape (k,).
    """

def search_batch(
    quality: NDArray[np.float64],
    cost: NDArray[np.float64],
    lam: NDArray[np.float64],
    mode: int,
    sd: NDArray[np.float64],
    chol: NDArray[np.float64],
    normals: NDArray[np.float64],
    ran: NDArray[np.uint8] | NDArray[np.bool_],
    max_depth: int,
    force_order: bool,
    prefixes_only: bool,
    prune: bool,
    prefer_expensive: NDArray[np.uint8] | NDArray[np.bool_],
    digits: int,
    lower: float = ...,
    upper: float = ...,
    *,
    n_threads: int = 1,
) -> tuple[
    NDArray[np.int64],
    NDArray[np.uint8],
    NDArray[np.float64],
    NDArray[np.float64],
    NDArray[np.float64],
    NDArray[np.int64],
]:
    """:func:`search` for ``n`` queries (see ``_reference.search_batch_kernel``).

    ``quality``, ``cost``, ``ran``: ``(n, k)``; ``lam``, ``prefer_expensive``: ``(n,)``;
    ``sd``: ``(n, k)`` in mode 1; ``chol``: ``(n, k, k)`` in mode 2; ``normals``:
    ``(n_samples, k)`` shared by all queries; ``lower``, ``upper``: quality bounds for all
    queries. The GIL is released and the rows are split over
    ``n_threads`` threads (0 = one per core).

    Returns
    -------
    tuple
        ``next_model`` int64 ``(n,)``, ``mask`` uint8 ``(n, k)``, ``utility``, ``quality``,
        ``cost`` float64 ``(n,)`` and ``evaluated`` int64 ``(n,)``.
    """

def replay_two_phase(
    ante_quality: NDArray[np.float64],
    post_quality: NDArray[np.float64],
    ante_sd: NDArray[np.float64],
    post_sd: NDArray[np.float64],
    ante_cost: NDArray[np.float64],
    post_cost: NDArray[np.float64],
    true_quality: NDArray[np.float64],
    true_cost: NDArray[np.float64],
    lambdas: NDArray[np.float64],
    prefer_expensive: NDArray[np.uint8] | NDArray[np.bool_],
    normals: NDArray[np.float64],
    use_sd: bool,
    strategy: int,
    thresholds: NDArray[np.float64],
    max_depth: int,
    force_order: bool,
    prefixes_only: bool,
    prune: bool,
    digits: int,
    select_last: bool,
    lower: float = ...,
    upper: float = ...,
    *,
    n_threads: int = 1,
) -> tuple[
    NDArray[np.int64],
    NDArray[np.int64],
    NDArray[np.int64],
    NDArray[np.float64],
    NDArray[np.float64],
]:
    """Replay a strategy over ``n`` queries with two-phase estimates.

    See ``_reference.replay_two_phase_kernel``. All estimate and truth arrays are
    ``(n, k)`` float64 (``ante_sd``, ``post_sd`` and ``normals (n_samples, k)`` only with
    ``use_sd`` and strategy 0); ``lambdas``: ``(n_steps >= 1,)`` for strategy 0;
    ``prefer_expensive``: ``(n,)``; ``thresholds``: at least ``k - 1`` entries for strategy 1.
    ``strategy``: 0 = supermodel search, 1 = threshold cascade; ``lower``, ``upper``: quality
    bounds of the search (strategy 0), also for the samples recomputed after each model runs.
    The GIL is released and the rows are split over ``n_threads`` threads (0 = one per core).

    Returns
    -------
    tuple
        ``selected`` int64 ``(n,)`` (-1 if nothing ran), ``n_run`` int64 ``(n,)``, ``order``
        int64 ``(n, k)`` (-1 padded), ``cost`` float64 ``(n,)`` (true cost of the models run)
        and ``quality`` float64 ``(n,)`` (true quality of the answer, 0 if nothing ran).
    """

class Decider:
    """A prepared decider (docs/decider.md): the policy, the normals and one factor per
    run-set, held once; immutable, so any number of threads may decide with it at once.

    ``mode`` 0 (exact means; ``normals``, ``runsets`` and ``factors`` are not inspected), 1
    (``factors`` ``(n_runsets, k)`` standard deviations) or 2 (``factors``
    ``(n_runsets, k, k)`` lower Cholesky factors); ``runsets`` ``(n_runsets,)`` uint64 bit
    masks, distinct. ``lam_cheap`` / ``lam_expensive`` ``(n_steps,)``: the multiplier of step
    ``j`` (``j`` models run) is entry ``min(j, n_steps - 1)``; the depth limit is clamped to
    ``[j, k]`` as a strategy's decision does, so decisions are bit-identical to it. A
    configuration whose worst-case decision (candidates from the empty run-set times samples)
    exceeds ``max_work`` is refused with ``ValueError``.
    """

    def __init__(
        self,
        k: int,
        mode: int,
        normals: NDArray[np.float64],
        lam_cheap: NDArray[np.float64],
        lam_expensive: NDArray[np.float64],
        max_depth: int,
        force_order: bool,
        prefixes_only: bool,
        digits: int,
        lower: float,
        upper: float,
        runsets: NDArray[np.uint64],
        factors: NDArray[np.float64],
        *,
        max_work: float = ...,
    ) -> None: ...
    def decide(
        self,
        quality: NDArray[np.float64],
        cost: NDArray[np.float64],
        ran: int,
        expensive: bool,
    ) -> tuple[int, int, float]:
        """One decision: ``(next_model or -1, members bit mask, utility)``.

        ``quality``, ``cost`` ``(k,)`` float64; ``ran`` the bit mask of run models. Checks
        only shapes, the mask and finiteness (ValueError); a run-set missing from the table
        raises KeyError. The GIL is released when the decider's worst case is large (as
        :func:`search` does: 65,536 candidates x samples or more).
        """
    def decide_batch(
        self,
        quality: NDArray[np.float64],
        cost: NDArray[np.float64],
        ran: NDArray[np.uint64],
        expensive: NDArray[np.uint8] | NDArray[np.bool_],
        *,
        n_threads: int = 1,
    ) -> tuple[NDArray[np.int64], NDArray[np.uint64], NDArray[np.float64]]:
        """Decisions for ``n`` rows (GIL released): ``(next_model, members, utility)``."""
    def has_runset(self, ran: int) -> bool:
        """Whether the table holds a factor for run-set ``ran`` (always True for exact means)."""
    @property
    def k(self) -> int: ...
    @property
    def mode(self) -> int: ...
    @property
    def n_samples(self) -> int: ...
    @property
    def n_runsets(self) -> int: ...
