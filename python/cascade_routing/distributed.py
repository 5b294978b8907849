"""Fitting a strategy on a Dask cluster, from logged data in Parquet partitions.

The entry point is :func:`fit_distributed` (``fit_distributed(strategy, client, path,
budget=...)``). The fit is the in-memory fit of :mod:`cascade_routing.strategies.fitting`
(same bound doubling, bisection and γ; docs/algorithm.md §9) with a different replayer: each
replay at one multiplier is a map over the partitions, where a worker reads one partition, runs
the compiled two-phase replay on it exactly as
:class:`~cascade_routing.strategies.replay.TableReplayer` does, and returns exact sums; the
client adds them up. Per-query arrays never leave the workers.

Exact sums
----------
A worker returns the sum of its per-query costs and qualities *exactly*, as an integer
multiple of ``2**-1074`` (every float64 is one; see
:func:`cascade_routing._exact.exact_sum`). The client adds the integers and divides by the
number of queries with one correctly rounded division. The mean therefore does not depend on
how the log is partitioned or in which order partial sums arrive, and equals the mean the
in-memory fit computes (:attr:`ReplayResult.mean_cost
<cascade_routing.strategies.replay.ReplayResult.mean_cost>`, also correctly rounded) from the
same data: the two fits are one function,
:func:`~cascade_routing.strategies.fitting.fit_with_replayer`, with two replayers.

Parquet schema (:func:`write_partitions`)
-----------------------------------------
A directory of ``part-NNNNN.parquet`` files, every column float64 without nulls, one row per
logged query. For each model ``m`` (as named by the strategy):

========================  =========================================================
column                    meaning
========================  =========================================================
``ante_quality/m``        ex-ante quality estimate (before ``m`` runs)
``post_quality/m``        post-hoc quality estimate (after ``m`` has run)
``ante_cost/m``           ex-ante cost estimate (non-negative)
``post_cost/m``           post-hoc cost estimate (non-negative)
``true_quality/m``        the logged quality of ``m``'s answer
``true_cost/m``           the logged cost of calling ``m`` (non-negative)
``ante_var/m``            optional: variance of the ex-ante estimate (non-negative)
``post_var/m``            optional: variance of the post-hoc estimate (non-negative)
========================  =========================================================

The variances are used (``use_sd`` in the compiled replay) when every partition has them.
The schema metadata key ``cascade_routing.models`` holds the model names as JSON; a strategy
whose models differ is refused.

Memory
------
Workers read one partition per task; with one thread per worker, a worker holds one
partition's tables (about three copies of ``rows × models × 8 columns × 8`` bytes at the
peak) plus the replay's outputs. Choose ``rows_per_partition`` accordingly. With
``cache_bytes`` a worker also keeps the tables of the partitions it has read, up to that
many bytes, for the fit's later replays, which then skip reading them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _backend
from ._exact import exact_mean_of, exact_sum
from .engine import standard_normals
from .options import ReplayKind, SearchOptions
from .strategies.fitting import (
    FitOptions,
    ReplayFitOptions,
    check_options,
    cost_order,
    fit_with_replayer,
)
from .validation import check_int, check_number, check_seed, float_array

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .strategies.base import Strategy

log = logging.getLogger("cascade_routing.distributed")

#: Columns every partition has, per model.
FIELDS = ("ante_quality", "post_quality", "ante_cost", "post_cost", "true_quality", "true_cost")
#: Optional columns, per model (both or neither).
VAR_FIELDS = ("ante_var", "post_var")
_NONNEGATIVE = frozenset({"ante_cost", "post_cost", "true_cost", "ante_var", "post_var"})
#: Schema metadata key holding the model names (JSON list).
MODELS_KEY = b"cascade_routing.models"


# ---------------------------------------------------------------------------- exact sums


@dataclass(frozen=True)
class ReplaySums:
    """What a distributed replay returns: exact sums over all queries (integer multiples of
    ``2**-1074``, see :func:`cascade_routing._exact.exact_sum`).

    It has the ``mean_cost`` and ``mean_quality`` of a
    :class:`~cascade_routing.strategies.replay.ReplayResult`, which is all fitting reads.
    """

    n: int
    cost_sum: int
    quality_sum: int

    @property
    def mean_cost(self) -> float:
        return exact_mean_of(self.cost_sum, self.n)

    @property
    def mean_quality(self) -> float:
        return exact_mean_of(self.quality_sum, self.n)

    def __add__(self, other: ReplaySums) -> ReplaySums:
        return ReplaySums(
            self.n + other.n,
            self.cost_sum + other.cost_sum,
            self.quality_sum + other.quality_sum,
        )


# ---------------------------------------------------------------------------- writing


def column(field: str, model: str) -> str:
    """The Parquet column of ``field`` for ``model``."""
    return f"{field}/{model}"


class DistributedFitOptions(FitOptions, total=False):
    """:func:`fit_distributed`'s options: those of
    ``fit`` (:class:`~cascade_routing.strategies.fitting.FitOptions`) and ``cache_bytes``."""

    cache_bytes: int


class _RequiredTables(TypedDict):
    ante_quality: ArrayLike
    post_quality: ArrayLike
    ante_cost: ArrayLike
    post_cost: ArrayLike
    true_quality: ArrayLike
    true_cost: ArrayLike


class LoggedTables(_RequiredTables, total=False):
    """The ``(n, k)`` tables of :func:`write_partitions`, by keyword: one per column of the
    schema (module docstring); the variances are optional."""

    ante_var: ArrayLike | None
    post_var: ArrayLike | None


def _tables(models: tuple[str, ...], tables: Mapping[str, Any]) -> dict[str, NDArray[np.float64]]:
    from .validation import check_model_names

    unknown = sorted(set(tables) - set(FIELDS + VAR_FIELDS))
    missing = [f for f in FIELDS if f not in tables]
    if unknown or missing:
        raise TypeError(
            f"the tables are keywords {list(FIELDS + VAR_FIELDS)} (the variances optional); "
            f"got unknown {unknown}, missing {missing}"
        )
    check_model_names(models)
    k = len(models)
    out: dict[str, NDArray[np.float64]] = {}
    shape: tuple[int, ...] | None = None
    for name, value in tables.items():
        if value is None:
            continue
        arr = float_array(
            value,
            name,
            2,
            shape=shape,
            layout="queries x models",
            nonnegative=name in _NONNEGATIVE,
        )
        if arr.shape[1] != k:
            raise ValueError(f"{name} has {arr.shape[1]} model columns; models lists {k}")
        shape = arr.shape
        out[name] = arr
    if ("ante_var" in out) != ("post_var" in out):
        raise ValueError("give both ante_var and post_var, or neither")
    return out


def write_partition(
    file: str | Path,
    models: Sequence[str],
    *,
    compression: str = "none",
    **tables: Unpack[LoggedTables],
) -> int:
    """Write one partition file (the schema in the module docstring) from the ``(n, k)``
    tables given by keyword (:class:`LoggedTables`); returns its rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = tuple(models)
    arrays = _tables(names, tables)
    cols = {
        column(field, m): pa.array(arr[:, j])
        for field, arr in arrays.items()
        for j, m in enumerate(names)
    }
    table = pa.table(cols).replace_schema_metadata({MODELS_KEY: json.dumps(list(names))})
    pq.write_table(table, str(file), compression=compression)
    return int(arrays["true_cost"].shape[0])


def write_partitions(
    path: str | Path,
    models: Sequence[str],
    *,
    rows_per_partition: int = 1_000_000,
    compression: str = "none",
    **tables: Unpack[LoggedTables],
) -> list[Path]:
    """Write in-memory ``(n, k)`` tables as Parquet partitions under the directory ``path``.

    The tables are given by keyword (:class:`LoggedTables`, e.g. ``ante_quality=...``); row
    ``i`` of every table is logged query ``i``, column ``j`` is ``models[j]``. The
    directory is created; it must not hold ``.parquet`` files already. Returns the files in
    order. See the module docstring for the schema.
    """
    rows = check_int(rows_per_partition, "rows_per_partition", 1)
    names = tuple(models)
    arrays = _tables(names, tables)
    n = arrays["true_cost"].shape[0]
    if n == 0:
        raise ValueError("the tables hold no rows; pass at least one logged query")
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.glob("*.parquet")):
        raise ValueError(f"path {folder} already holds .parquet files; use an empty directory")
    files = []
    for part, start in enumerate(range(0, n, rows)):
        file = folder / f"part-{part:05d}.parquet"
        chunk = {name: arr[start : start + rows] for name, arr in arrays.items()}
        write_partition(file, names, compression=compression, **chunk)
        files.append(file)
    return files


# ---------------------------------------------------------------------------- reading


def partition_files(path: str | Path | Sequence[str | Path]) -> list[str]:
    """The partition files of ``path``: a directory (its ``*.parquet``, sorted), one file, or
    a sequence of files."""
    if isinstance(path, (str, Path)):
        p = Path(path)
        if p.is_dir():
            files = sorted(str(f) for f in p.glob("*.parquet"))
        elif p.is_file():
            files = [str(p)]
        else:
            raise ValueError(f"parquet_path {p} is neither a directory nor a file")
    else:
        files = [str(f) for f in path]
    if not files:
        raise ValueError(f"parquet_path {path} holds no .parquet files; see write_partitions")
    return files


@dataclass(frozen=True)
class DatasetInfo:
    """What the client knows of the partitions (schemas only, no data read)."""

    files: tuple[str, ...]
    rows: tuple[int, ...]
    use_var: bool

    @property
    def n_queries(self) -> int:
        return sum(self.rows)


def inspect_partitions(files: Sequence[str], models: Sequence[str]) -> DatasetInfo:
    """Check every partition's schema against ``models`` (footers only); ValueError if not."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    k = len(models)
    rows = []
    has_var = []
    for f in files:
        meta = pq.ParquetFile(f)
        schema = meta.schema_arrow
        stored = (schema.metadata or {}).get(MODELS_KEY)
        if stored is not None:
            data_models = json.loads(stored)
            if len(data_models) != k:
                raise ValueError(
                    f"partition {f} holds {len(data_models)} models {data_models}; the strategy "
                    f"has {k} {list(models)}. Fit a strategy over the logged models"
                )
            if list(data_models) != list(models):
                raise ValueError(
                    f"partition {f} holds models {data_models}; the strategy has "
                    f"{list(models)} (same names, same order)"
                )
        names = set(schema.names)
        missing = [column(fl, m) for fl in FIELDS for m in models if column(fl, m) not in names]
        if missing:
            raise ValueError(
                f"partition {f} misses columns {missing[:6]}{' ...' if len(missing) > 6 else ''};"
                " see cascade_routing.distributed for the schema"
            )
        var = [column(fl, m) in names for fl in VAR_FIELDS for m in models]
        if any(var) and not all(var):
            raise ValueError(f"partition {f} has some variance columns but not all of them")
        for fl in FIELDS + (VAR_FIELDS if all(var) else ()):
            for m in models:
                typ = schema.field(column(fl, m)).type
                if not (pa.types.is_floating(typ) or pa.types.is_integer(typ)):
                    raise ValueError(
                        f"column {column(fl, m)} of partition {f} has type {typ}; expected float64"
                    )
        rows.append(int(meta.metadata.num_rows))
        has_var.append(all(var))
    if any(has_var) and not all(has_var):
        raise ValueError(
            "some partitions have variance columns and others not; use the same schema"
        )
    if sum(rows) == 0:
        raise ValueError("the partitions hold no rows; pass at least one logged query")
    return DatasetInfo(tuple(files), tuple(rows), bool(has_var and all(has_var)))


def read_partition(
    file: str, models: Sequence[str], fields: Sequence[str], order: NDArray[np.int64]
) -> dict[str, NDArray[np.float64]]:
    """``fields`` of one partition as validated ``(n, k)`` float64 tables, columns in
    ``order`` (positions in ``models``)."""
    import pyarrow.parquet as pq

    names = [m for m in models]
    wanted = [column(fl, names[p]) for fl in fields for p in order.tolist()]
    table = pq.read_table(file, columns=wanted)
    k = order.shape[0]
    out: dict[str, NDArray[np.float64]] = {}
    for fl in fields:
        n = table.num_rows
        arr = np.empty((n, k))
        for j, p in enumerate(order.tolist()):
            col = table.column(column(fl, names[p]))
            if col.null_count:
                raise ValueError(f"column {column(fl, names[p])} of partition {file} has nulls")
            arr[:, j] = col.to_numpy()
        out[fl] = float_array(
            arr,
            f"{fl} of partition {file}",
            2,
            layout="queries x models",
            nonnegative=fl in _NONNEGATIVE,
            hint="drop or fill those rows first",
        )
    return out


# ---------------------------------------------------------------------------- worker tasks


@dataclass(frozen=True)
class ReplaySpec:
    """Everything a worker needs to replay its partition (no estimator, no strategy)."""

    models: tuple[str, ...]
    order: NDArray[np.int64]
    use_var: bool
    normals: NDArray[np.float64]
    kind: ReplayKind
    options: SearchOptions
    select_last: bool
    backend: str
    n_threads: int
    #: The fit's cache on each worker (see :func:`partition_tables`): its name and budget.
    cache_token: str = ""
    cache_bytes: int = 0


@dataclass
class _WorkerCache:
    tables: dict[str, _backend.ReplayTables] = dataclasses.field(default_factory=dict)
    nbytes: int = 0
    hits: int = 0
    misses: int = 0


# One cache per fit (by token) in each worker process; dropped when the fit ends.
_CACHES: dict[str, _WorkerCache] = {}
_CACHE_LOCK = threading.Lock()


def read_tables(file: str, spec: ReplaySpec) -> _backend.ReplayTables:
    """One partition's replay tables, validated, columns in the strategy's order."""
    fields = FIELDS + (VAR_FIELDS if spec.use_var else ())
    t = read_partition(file, spec.models, fields, np.array(spec.order, dtype=np.int64))
    n = t["true_cost"].shape[0]
    if spec.use_var:
        ante_sd, post_sd = np.sqrt(t.pop("ante_var")), np.sqrt(t.pop("post_var"))
    else:
        ante_sd = post_sd = np.zeros((n, 0))
    return _backend.ReplayTables(
        ante_quality=t["ante_quality"],
        post_quality=t["post_quality"],
        ante_sd=ante_sd,
        post_sd=post_sd,
        ante_cost=t["ante_cost"],
        post_cost=t["post_cost"],
        true_quality=t["true_quality"],
        true_cost=t["true_cost"],
        use_sd=spec.use_var,
    )


def partition_tables(file: str, spec: ReplaySpec) -> _backend.ReplayTables:
    """:func:`read_tables`, kept in this worker's cache for the fit while its tables fit in
    ``spec.cache_bytes`` (the first partitions read are kept, none is evicted: the fit scans
    the partitions in the same order at every replay)."""
    if spec.cache_bytes <= 0:
        return read_tables(file, spec)
    with _CACHE_LOCK:
        cache = _CACHES.setdefault(spec.cache_token, _WorkerCache())
        tables = cache.tables.get(file)
        if tables is not None:
            cache.hits += 1
            return tables
        cache.misses += 1
    tables = read_tables(file, spec)
    size = sum(
        getattr(tables, f.name).nbytes for f in dataclasses.fields(tables) if f.name != "use_sd"
    )
    with _CACHE_LOCK:
        if file not in cache.tables and cache.nbytes + size <= spec.cache_bytes:
            cache.tables[file] = tables
            cache.nbytes += size
    return tables


def cache_info(token: str | None = None) -> tuple[int, int, int, int]:
    """Partitions, bytes, hits and misses of the cache of the fit ``token`` in this worker
    (of every fit's cache if ``token`` is None)."""
    with _CACHE_LOCK:
        caches = list(_CACHES.values()) if token is None else [_CACHES.get(token, _WorkerCache())]
        return (
            sum(len(c.tables) for c in caches),
            sum(c.nbytes for c in caches),
            sum(c.hits for c in caches),
            sum(c.misses for c in caches),
        )


def drop_cache(token: str) -> None:
    """Release the fit ``token``'s cache in this worker."""
    with _CACHE_LOCK:
        _CACHES.pop(token, None)


def partition_stats(file: str, models: tuple[str, ...]) -> tuple[int, list[int], float, float]:
    """Rows, exact per-model sums of the true cost, and the post-hoc quality range."""
    order = np.arange(len(models), dtype=np.int64)
    t = read_partition(file, models, ("post_quality", "true_cost"), order)
    post, cost = t["post_quality"], t["true_cost"]
    sums = [exact_sum(cost[:, j]) for j in range(cost.shape[1])]
    lo = float(post.min()) if post.size else np.inf
    hi = float(post.max()) if post.size else -np.inf
    return int(cost.shape[0]), sums, lo, hi


def replay_partition(
    file: str,
    spec: ReplaySpec,
    lambdas: NDArray[np.float64],
    thresholds: NDArray[np.float64],
    prefer_expensive: bool,
) -> ReplaySums:
    """The compiled two-phase replay of one partition, as exact sums (runs on a worker)."""
    # Arrays arrive deserialised from message buffers (read-only, maybe unaligned): copy.
    lambdas = np.array(lambdas, dtype=np.float64)
    thresholds = np.array(thresholds, dtype=np.float64)
    normals = np.array(spec.normals, dtype=np.float64)
    tables = partition_tables(file, spec)
    n = tables.true_cost.shape[0]
    _, _, _, cst, qual = _backend.get(spec.backend).run_replay(
        tables,
        lambdas,
        np.full(n, 1 if prefer_expensive else 0, dtype=np.uint8),
        normals,
        spec.kind,
        thresholds,
        spec.options,
        spec.select_last,
        spec.n_threads,
    )
    return ReplaySums(n, exact_sum(np.asarray(cst)), exact_sum(np.asarray(qual)))


# ---------------------------------------------------------------------------- replayers


class DaskReplayer:
    """A :class:`~cascade_routing.strategies.replay.Replayer` whose replays are a map over
    Parquet partitions on a Dask cluster and a reduce of exact sums.

    ``replay`` returns :class:`ReplaySums` (``mean_cost``, ``mean_quality``), not per-query
    arrays; fitting reads nothing else.
    """

    engine = "dask"

    def __init__(
        self,
        strategy: Strategy,
        client: Any,
        info: DatasetInfo,
        post_range: tuple[float, float],
        n_threads: int = 1,
        cache_bytes: int = 0,
    ) -> None:
        k = len(strategy.models)
        self.strategy = strategy
        self.client = client
        self.info = info
        self._post_range = post_range
        self.spec = ReplaySpec(
            models=tuple(strategy.models),
            order=np.asarray(strategy.order_, dtype=np.int64).copy(),
            use_var=info.use_var,
            normals=(
                standard_normals(k, strategy.n_samples, strategy.sample_seed)
                if info.use_var
                else np.zeros((0, k))
            ),
            kind=strategy.replay_kind,
            options=strategy.options_,
            select_last=strategy.select_last,
            backend=_backend.backend(),
            n_threads=n_threads,
            cache_token=uuid.uuid4().hex,
            cache_bytes=cache_bytes,
        )
        [self._spec_future] = client.scatter([self.spec], broadcast=True)
        # With a cache, partition i always goes to the same worker (i modulo the workers).
        self._homes: list[str] | None = None
        if cache_bytes > 0:
            workers = sorted(client.scheduler_info()["workers"])
            if workers:
                self._homes = [workers[i % len(workers)] for i in range(len(info.files))]

    def post_hoc_range(self) -> tuple[float, float]:
        return self._post_range

    def cache_info(self) -> dict[str, tuple[int, int, int, int]]:
        """Per worker: the partitions and bytes this fit keeps, its cache hits and misses."""
        info: dict[str, tuple[int, int, int, int]] = self.client.run(
            cache_info, self.spec.cache_token
        )
        return info

    def close(self) -> None:
        """Release the workers' cache of this fit."""
        self.client.run(drop_cache, self.spec.cache_token)

    def replay(self, lambdas: NDArray[np.float64], prefer_expensive: bool) -> ReplaySums:
        k = len(self.strategy.models)
        lam, thresholds = self.strategy.replay_arguments(lambdas, k)
        kwargs = {
            "spec": self._spec_future,
            "lambdas": np.ascontiguousarray(lam, dtype=np.float64),
            "thresholds": np.ascontiguousarray(thresholds, dtype=np.float64),
            "prefer_expensive": bool(prefer_expensive),
        }
        if self._homes is None:
            futures = self.client.map(
                replay_partition, list(self.info.files), pure=False, **kwargs
            )
        else:
            # Each partition goes to the worker that has cached it (another if it is gone).
            futures = [
                self.client.submit(
                    replay_partition,
                    f,
                    workers=[home],
                    allow_other_workers=True,
                    pure=False,
                    **kwargs,
                )
                for f, home in zip(self.info.files, self._homes)
            ]
        parts = self.client.gather(futures)
        total = ReplaySums(0, 0, 0)
        for p in parts:
            total = total + p
        return total


# ---------------------------------------------------------------------------- fitting


def _check_client(client: Any) -> None:
    if not all(callable(getattr(client, a, None)) for a in ("map", "gather", "scatter")):
        raise TypeError(
            "client must be a dask.distributed.Client (e.g. Client(LocalCluster())), "
            f"got {type(client).__name__}"
        )


def fit_distributed(
    strategy: Strategy,
    client: Any,
    parquet_path: str | Path | Sequence[str | Path],
    *,
    budget: float,
    seed: int | None = None,
    n_threads: int = 1,
    cache_bytes: int = 0,
    **options: Unpack[ReplayFitOptions],
) -> Strategy:
    """:meth:`Strategy.fit <cascade_routing.strategies.base.Strategy.fit>` on a Dask cluster:
    fit ``strategy`` in place on logged data in Parquet partitions; returns the strategy.

    ``client`` is a ``dask.distributed.Client``; ``parquet_path`` a directory of partitions
    written by :func:`write_partitions` (or one file, or a list of files), readable by every
    worker. The strategy's estimators are not used: the estimates come from the partitions.
    ``n_threads`` is the compiled replay's threads per task. ``cache_bytes`` (default 0:
    none) lets each worker keep the tables of the partitions it has read, up to that many
    bytes, for the later replays of this fit, instead of reading them again; a worker's
    memory is then bounded by one partition plus ``cache_bytes``. The cache is released when
    the fit ends. The other parameters are
    :meth:`Strategy.fit <cascade_routing.strategies.base.Strategy.fit>`'s.

    Sets ``lambdas_``, ``lambdas_expensive_``, ``gamma_`` and ``fit_info_`` (plus
    ``fit_info_["partitions"]``) as the in-memory fit does on the same data: exact sums make
    the means independent of the partitioning (see the module docstring).
    """
    started = time.perf_counter()
    _check_client(client)
    s = strategy
    budget = check_number(budget, "budget", 0.0)
    check_options(s, options)
    threads = check_int(n_threads, "n_threads", 0)
    cache = check_int(cache_bytes, "cache_bytes", 0)
    models = tuple(s.models)
    info = inspect_partitions(partition_files(parquet_path), models)
    if seed is not None:
        s.seed = check_seed(seed)
    stats = client.gather(client.map(partition_stats, list(info.files), models=models, pure=False))
    n = sum(st[0] for st in stats)
    if n != info.n_queries:
        raise ValueError(
            f"the partitions changed while fitting ({n} rows, {info.n_queries} expected)"
        )
    if isinstance(s.order, str) and s.order == "cost":
        sums = [sum(st[1][j] for st in stats) for j in range(len(models))]
        s.order_ = cost_order([exact_mean_of(t, n) for t in sums])
    post_range = (min(st[2] for st in stats), max(st[3] for st in stats))
    rep = DaskReplayer(s, client, info, post_range, threads, cache)
    extra = {"partitions": len(info.files)}
    try:
        fit_with_replayer(
            s, rep, budget=budget, n_queries=n, started=started, extra_info=extra, **options
        )
    finally:
        rep.close()
    return s


__all__ = [
    "FIELDS",
    "VAR_FIELDS",
    "DaskReplayer",
    "DistributedFitOptions",
    "LoggedTables",
    "ReplaySums",
    "column",
    "fit_distributed",
    "inspect_partitions",
    "partition_files",
    "read_partition",
    "write_partitions",
    "write_partition",
]
