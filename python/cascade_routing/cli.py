"""Command line: ``cascade-routing evaluate``, ``reproduce`` and ``datasets``.

Run ``cascade-routing --help`` (or ``python -m cascade_routing --help``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import __version__, datasets, simulation
from .evaluation import STRATEGY_LABELS, Evaluation, evaluate

DEFAULT_DATASET = "routerbench"
DEFAULT_OUT = "cascade-routing-out"


class CliError(Exception):
    """A usage error reported as one line, exit status 2."""


def _progress(enabled: bool, desc: str) -> tuple[Callable[[int, int], None] | None, Callable[[], None]]:
    """A tqdm progress bar driven by ``progress(done, total)`` callbacks, or nothing."""
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    bar: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(total=total, desc=desc, leave=False, file=sys.stderr)
        bar["bar"].n = done
        bar["bar"].refresh()

    def close() -> None:
        if "bar" in bar:
            bar["bar"].close()

    return update, close


def _strategies(text: str | None) -> list[str]:
    if not text:
        return list(STRATEGY_LABELS)
    keys = [s.strip().replace("-", "_") for s in text.split(",") if s.strip()]
    aliases = {"router": "routing", "threshold": "threshold_cascade", "cascade": "optimal_cascade", "cascade_router": "cascade_routing"}
    keys = [aliases.get(k, k) for k in keys]
    unknown = [k for k in keys if k not in STRATEGY_LABELS]
    if unknown:
        raise CliError(f"unknown strategies {unknown}; choose from {', '.join(STRATEGY_LABELS)}")
    return keys


def _bounds(text: str | None) -> tuple[float, float] | None:
    if not text:
        return None
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise CliError(f"--quality-bounds takes two numbers like 0,1 (got {text!r})") from exc
    if not low < high:
        raise CliError(f"--quality-bounds: the lower bound must be below the upper, got {text!r}")
    return low, high


def _pool(text: str | None, data: datasets.Dataset) -> list[str] | None:
    if text is None:
        return None
    if text.strip().isdigit() and data.name.startswith("routerbench"):
        size = int(text)
        if size not in simulation.PAPER_POOLS:
            raise CliError(f"--pool {size}: the paper's pools have {sorted(simulation.PAPER_POOLS)} models")
        return list(simulation.PAPER_POOLS[size])
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in data.models]
    if unknown:
        raise CliError(f"--pool names unknown models {unknown}; the dataset has: {', '.join(data.models)}")
    return names


def _spread_pool(data: datasets.Dataset, train: np.ndarray, size: int) -> list[str]:
    """``size`` models spread evenly over the range of mean training costs."""
    order = np.argsort(data.cost[train].mean(axis=0), kind="stable")
    picks = np.unique(np.round(np.linspace(0, len(order) - 1, size)).astype(int))
    return [data.models[i] for i in order[picks]]


def prepare(dataset: str, *, pool: str | None, noise: str, seed: int, test_size: float, split: str = "auto", benchmarks: str | None = None) -> tuple[datasets.Dataset, simulation.TwoPhaseTables, np.ndarray, np.ndarray, str]:
    """Load a dataset and build its estimators and split; returns a description too.

    RouterBench-shaped data (no confidences) uses the paper's simulated estimators at the
    noise level and the paper's split; llm_cascades data uses its confidences and, with
    ``split="auto"``, the source's own train/test split; SWE-bench uses repository priors and
    the resolved flag. ``split="random"`` always splits at random (``test_size``, ``seed``).
    """
    from . import real_estimators

    try:
        kwargs: dict[str, Any] = {}
        if benchmarks:
            is_folder = dataset not in datasets.bundled_datasets() and Path(dataset).is_dir()
            if not is_folder or datasets.detect_layout(dataset) != "llm_cascades":
                raise CliError("--benchmarks applies to a folder of llm_cascades data only")
            kwargs["benchmarks"] = None if benchmarks == "all" else tuple(b.strip() for b in benchmarks.split(","))
        data = datasets.load(dataset, **kwargs)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    if split not in ("auto", "source", "random"):
        raise CliError(f"--split must be auto, source or random, got {split!r}")
    if data.name.startswith("routerbench") and data.n_models == len(simulation.ROUTERBENCH_MODELS) and split != "random":
        paper_pool = _pool(pool, data) or list(simulation.PAPER_POOLS[5])
        run = simulation.routerbench_run(data, paper_pool, noise, seed=seed)
        desc = f"{data.name}, {len(paper_pool)} models, simulated estimators ({noise} noise), paper split"
        return run.dataset, run.estimates, run.train_rows, run.test_rows, desc
    chosen = _pool(pool, data)
    split_name = "random split"
    if split != "random" and "source_split" in data.features:
        split_name = "the source's split"
        labels = np.asarray(data.features["source_split"]).astype(str)
        train, test = np.flatnonzero(labels == "train"), np.flatnonzero(labels == "test")
        if train.size == 0 or test.size == 0:
            if split == "source":
                raise CliError("--split source: the data has no train and test rows of its own")
            split_name = "random split"
            train, test = data.split_rows(test_size=test_size, seed=seed)
    elif split == "source":
        raise CliError("--split source: the data has no split of its own; use auto or random")
    else:
        train, test = data.split_rows(test_size=test_size, seed=seed)
    if chosen is None and data.n_models > 11:
        chosen = _spread_pool(data, train, 10)
    if chosen is not None:
        data = data.select_models(chosen)
    if data.confidence is not None:
        tables = real_estimators.confidence_estimates(data, train, seed=seed)
        kind = "confidence-based estimators"
    elif data.name.startswith("swebench"):
        tables = real_estimators.swebench_estimates(data, train, seed=seed)
        kind = "repository-prior ex-ante, resolved-flag post-hoc estimators"
    else:
        run_tables = simulation.simulate_estimates(
            data.quality[np.concatenate([train, test])], data.cost[np.concatenate([train, test])], noise, seed
        )
        rows = np.concatenate([train, test])
        data = data.subset(rows)
        train, test = np.arange(train.size), np.arange(train.size, rows.size)
        tables = run_tables
        kind = f"simulated estimators ({noise} noise)"
    return data, tables, np.asarray(train), np.asarray(test), f"{data.name}, {data.n_models} models, {kind}, {split_name}"


def cmd_evaluate(args: argparse.Namespace) -> int:
    data, tables, train, test, desc = prepare(args.dataset, pool=args.pool, noise=args.noise, seed=args.seed, test_size=args.test_size, split=args.split, benchmarks=args.benchmarks)
    progress, close = _progress(args.progress, "fitting")
    try:
        ev = evaluate(
            data, tables, train, test,
            strategies=_strategies(args.strategies), max_depth=args.max_depth, lambdas=args.lambdas,
            n_trials=args.trials, n_boot=args.bootstrap, seed=args.seed, n_threads=args.threads,
            progress=progress, name=data.name, quality_bounds=_bounds(args.quality_bounds),
        )
    finally:
        close()
    print(desc)
    print(ev.format_table())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(str(data.name)).name.replace("/", "_")
    png = out / f"{stem}.png"
    ev.plot(png, title=desc)
    json_path = Path(args.json) if args.json else out / f"{stem}.json"
    ev.save_json(json_path)
    print(f"plot: {png}\npoints: {json_path}\n({ev.seconds:.1f} s)")
    return 0


def _reproduce_table(results: dict[str, Evaluation], columns: Sequence[str]) -> str:
    methods = ["linear", *STRATEGY_LABELS]
    head = f"{'method':<18}" + "".join(f"{c:>17}" for c in columns)
    lines = ["AUC x100: this run | paper (RouterBench 0-shot) | reference code on this subset", head]
    for m in methods:
        label = STRATEGY_LABELS.get(m, m)
        cells = []
        for c in columns:
            ev = results[c]
            ours = 100 * (ev.linear_auc if m == "linear" else ev.curves[m].auc)
            paper = simulation.PAPER_AUC[label].get(c, float("nan"))
            ref = simulation.REFERENCE_SUBSET_AUC[label].get(c, float("nan"))
            ref_s = "  -  " if np.isnan(ref) else f"{ref:5.1f}"
            cells.append(f"{ours:6.2f}|{paper:5.1f}|{ref_s}")
        lines.append(f"{label:<18}" + "".join(f"{cell:>17}" for cell in cells))
    return "\n".join(lines)


def cmd_reproduce(args: argparse.Namespace) -> int:
    try:
        pools = [int(p) for p in args.pools.split(",")]
    except ValueError as exc:
        raise CliError(f"--pools takes sizes like 3,5,11: {exc}") from exc
    bad = [p for p in pools if p not in simulation.PAPER_POOLS]
    if bad:
        raise CliError(f"--pools: the paper's pools have {sorted(simulation.PAPER_POOLS)} models, not {bad}")
    noises = [n.strip() for n in args.noise.split(",")]
    bad_n = [n for n in noises if n not in simulation.NOISE_LEVELS]
    if bad_n:
        raise CliError(f"--noise: unknown levels {bad_n}; use {', '.join(simulation.NOISE_LEVELS)}")
    data = datasets.load(args.dataset)
    results: dict[str, Evaluation] = {}
    columns = []
    started = time.perf_counter()
    progress_on = args.progress
    for size in pools:
        for noise in noises:
            col = f"{size}{noise[0].upper()}"
            columns.append(col)
            t0 = time.perf_counter()
            run = simulation.routerbench_run(data, simulation.PAPER_POOLS[size], noise, seed=args.seed)
            tables = simulation.with_reference_variance_quirk(run.estimates) if args.reference_variance_quirk else run.estimates
            progress, close = _progress(progress_on, col)
            try:
                results[col] = evaluate(
                    run.dataset, tables, run.train_rows, run.test_rows,
                    max_depth=5, lambdas="constant", n_boot=args.bootstrap, seed=args.seed,
                    n_threads=args.threads, progress=progress, name=col,
                )
            finally:
                close()
            parts = ", ".join(f"{STRATEGY_LABELS[k]} {c.fit_seconds + c.replay_seconds:.1f}s" for k, c in results[col].curves.items())
            print(f"{col}: {time.perf_counter() - t0:.1f} s ({parts})", file=sys.stderr)
    if args.reference_variance_quirk:
        print("(with the reference implementation's variance-for-standard-deviation quirk)")
    print(_reproduce_table(results, columns))
    print(
        "\nNote: the data differ from the paper's. This is a 3,150-query subset of RouterBench "
        "(ARC-Challenge, MBPP, Winogrande; probably the 5-shot file), so absolute numbers are "
        "not comparable with the paper's column; the reference-code column ran the same subset "
        "and protocol."
    )
    print(f"total: {time.perf_counter() - started:.1f} s")
    if args.json:
        import json

        Path(args.json).write_text(json.dumps({c: ev.to_dict() for c, ev in results.items()}, indent=2))
        print(f"points: {args.json}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    for name in datasets.bundled_datasets():
        data = datasets.load(name)
        print(f"{name}: {data.n_queries} queries x {data.n_models} models (dropped {data.n_dropped})")
        print("  " + data.source.replace("\n", "\n  "))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cascade-routing", description="Evaluate routing, cascading and cascade routing of LLMs on logged data.")
    parser.add_argument("--version", action="version", version=f"cascade-routing {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True)

    def progress_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--progress", dest="progress", action="store_true", default=None, help="show a progress bar (default: on a terminal)")
        p.add_argument("--no-progress", dest="progress", action="store_false", help="never show a progress bar")
        p.add_argument("--threads", type=int, default=1, help="threads for replays (0 = one per core)")
        p.add_argument("--seed", type=int, default=0, help="seed of estimators, splits, fits and bootstrap")
        p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates for the AUC intervals")

    ev = sub.add_parser("evaluate", help="AUC of each strategy on a dataset, with a plot and a JSON of all points")
    ev.add_argument("dataset", nargs="?", default=DEFAULT_DATASET, help=f"bundled name ({', '.join(datasets.bundled_datasets())}) or a data folder; default {DEFAULT_DATASET}")
    ev.add_argument("--pool", help="models: a paper pool size for RouterBench (3, 5, 11) or comma-separated names")
    ev.add_argument("--noise", default="medium", choices=sorted(simulation.NOISE_LEVELS), help="noise of the simulated estimators (data without confidences)")
    ev.add_argument("--strategies", help=f"comma-separated subset of {', '.join(STRATEGY_LABELS)}")
    ev.add_argument("--max-depth", type=int, default=5, help="largest supermodel of cascade routing")
    ev.add_argument("--lambdas", choices=["constant", "per_step"], default="constant")
    ev.add_argument("--trials", type=int, default=200, help="per-step search evaluations")
    ev.add_argument("--quality-bounds", metavar="LO,HI", help="clip quality samples to [LO, HI] in expected maxima, e.g. 0,1 for probabilities")
    ev.add_argument("--benchmarks", help="llm_cascades folders: comma-separated benchmarks, or 'all' (default: mmlu)")
    ev.add_argument("--split", choices=["auto", "source", "random"], default="auto", help="auto: the paper's split for RouterBench, the source's split where the data has one, else random")
    ev.add_argument("--test-size", type=float, default=0.5, help="test fraction of a random split")
    ev.add_argument("--out", default=DEFAULT_OUT, help="folder for the plot and the JSON")
    ev.add_argument("--json", help="where to write the JSON of all points (default: in --out)")
    progress_flags(ev)
    ev.set_defaults(func=cmd_evaluate)

    rp = sub.add_parser("reproduce", help="the paper's RouterBench grid beside its published table")
    rp.add_argument("--dataset", default=DEFAULT_DATASET, help="RouterBench data (bundled name or folder)")
    rp.add_argument("--pools", default="3,5,11")
    rp.add_argument("--noise", default="low,medium,high")
    rp.add_argument("--json", help="write every point of every configuration here")
    rp.add_argument(
        "--reference-variance-quirk", action="store_true",
        help="use the variance where the reference code (wrongly) uses it instead of the standard deviation, to match its numbers",
    )
    progress_flags(rp)
    rp.set_defaults(func=cmd_reproduce, bootstrap=200)

    ds = sub.add_parser("datasets", help="list the bundled datasets with their origin and licence")
    ds.set_defaults(func=cmd_datasets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.ERROR if args.verbose == 0 else logging.INFO if args.verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "progress", False) is None:
        args.progress = sys.stderr.isatty()
    if hasattr(args, "threads") and args.threads < 0:
        parser.error("--threads must be >= 0")
    if hasattr(args, "bootstrap") and args.bootstrap < 2:
        parser.error("--bootstrap must be >= 2")
    if hasattr(args, "test_size") and not 0.0 < args.test_size < 1.0:
        parser.error("--test-size must lie strictly between 0 and 1")
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"cascade-routing: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
