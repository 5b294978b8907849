"""Command line: ``cascade-routing evaluate``, ``reproduce`` and ``datasets``.

Run ``cascade-routing --help`` (or ``python -m cascade_routing --help``). This module only
parses and checks the arguments; the work is :mod:`cascade_routing.experiments.pipeline`,
which needs the ``[eval]`` extra. A mistake is reported as one line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from types import ModuleType

from ._version import __version__
from .experiments.settings import (
    BUNDLED,
    NOISE_LEVELS,
    PAPER_POOLS,
    STRATEGY_ALIASES,
    STRATEGY_LABELS,
)
from .validation import MAX_MODELS

#: The modules of the ``[eval]`` extra, which the experiment needs.
EVAL_MODULES = ("pandas", "sklearn", "matplotlib", "tqdm")

pipeline: ModuleType | None
_MISSING = ""
try:
    from .experiments import pipeline
except ModuleNotFoundError as exc:
    if (exc.name or "").split(".")[0] not in EVAL_MODULES:
        raise
    pipeline, _MISSING = None, exc.name or ""

DEFAULT_DATASET = "routerbench"
DEFAULT_OUT = "cascade-routing-out"
EVAL_EXTRA = 'pip install "cascade-routing[eval]"'


class CliError(Exception):
    """A usage error reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (exit status 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see --help)\n")


# --------------------------------------------------------------------------- argument types


def _int_type(low: int, high: int | None = None, *, extra: str = "") -> Callable[[str], int]:
    """An argparse type: an int in ``[low, high]``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"between {low} and {high}"
            raise argparse.ArgumentTypeError(f"must be {bounds}{extra}, got {value}")
        return value

    return parse


def _bootstrap(text: str) -> int:
    """``--bootstrap``: 0 (no intervals) or at least 2 replicates."""
    value = _int_type(0)(text)
    if value == 1:
        raise argparse.ArgumentTypeError("must be 0 (no intervals) or at least 2, got 1")
    return value


def _fraction(text: str) -> float:
    """``--test-size``: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {text}")
    return value


def _strategies(text: str) -> list[str]:
    """``--strategies``: comma-separated strategy keys (or their aliases)."""
    keys = [s.strip().replace("-", "_") for s in text.split(",") if s.strip()]
    keys = [STRATEGY_ALIASES.get(k, k) for k in keys]
    unknown = [k for k in keys if k not in STRATEGY_LABELS]
    if unknown or not keys:
        raise argparse.ArgumentTypeError(
            f"unknown strategies {unknown}; choose from {', '.join(STRATEGY_LABELS)}"
        )
    return keys


def _bounds(text: str) -> tuple[float, float]:
    """``--quality-bounds LO,HI``."""
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes two numbers like 0,1 (got {text!r})") from None
    if not low < high:
        raise argparse.ArgumentTypeError(f"the lower bound must be below the upper, got {text!r}")
    return low, high


def _seeds(text: str) -> list[int]:
    """``--seeds``: comma-separated split seeds, e.g. 0,1,2."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes seeds like 0,1,2 (got {text!r})") from None
    if not seeds or any(s < 0 or s > 2**32 - 1 for s in seeds):
        raise argparse.ArgumentTypeError(f"takes seeds between 0 and 2**32-1 (got {text!r})")
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"repeats a seed ({text!r}); each seed is one split")
    return seeds


def _pools(text: str) -> list[int]:
    """``--pools``: comma-separated paper pool sizes."""
    try:
        pools = [int(p) for p in text.split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"takes sizes like 3,5,11: {exc}") from None
    bad = [p for p in pools if p not in PAPER_POOLS]
    if bad:
        raise argparse.ArgumentTypeError(
            f"the paper's pools have {sorted(PAPER_POOLS)} models, not {bad}"
        )
    return pools


def _noises(text: str) -> list[str]:
    """``--noise`` of ``reproduce``: comma-separated noise levels."""
    noises = [n.strip() for n in text.split(",")]
    bad = [n for n in noises if n not in NOISE_LEVELS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown levels {bad}; use {', '.join(NOISE_LEVELS)}")
    return noises


# --------------------------------------------------------------------------- commands


def _pipeline() -> ModuleType:
    if pipeline is None:
        raise CliError(
            f"the command line needs the eval extra (missing module {_MISSING!r}): {EVAL_EXTRA}"
        )
    return pipeline


def _check_evaluate_flags(args: argparse.Namespace) -> None:
    """Flag combinations that cannot mean anything, refused before any work."""
    learned = args.estimators == "learned"
    if args.seeds is not None and args.seed is not None:
        raise CliError(
            "--seed and --seeds: give one (--seeds evaluates one random split per seed)"
        )
    if args.plot is not None and not learned:
        raise CliError(
            "--plot draws the calibration of the learned estimators; add --estimators learned"
        )
    if learned and args.noise is not None:
        raise CliError("--noise sets the simulated estimators; it has no effect with learned ones")


def cmd_evaluate(args: argparse.Namespace) -> int:
    _check_evaluate_flags(args)
    pipe = _pipeline()
    if args.estimators == "learned" or args.seeds is not None:
        run = pipe.evaluate_splits(
            args.dataset,
            estimators=args.estimators,
            seeds=args.seeds if args.seeds is not None else [args.seed or 0],
            pool=args.pool,
            noise=args.noise or "medium",
            test_size=args.test_size,
            split=args.split,
            benchmarks=args.benchmarks,
            strategies=args.strategies,
            max_depth=args.max_depth,
            lambdas=args.lambdas,
            n_trials=args.trials,
            n_boot=args.bootstrap,
            n_threads=args.threads,
            quality_bounds=args.quality_bounds,
            progress=args.progress,
        )
        print(pipe.write_splits_report(run, args.out, args.json, args.plot))
        return 0
    args.seed = args.seed or 0
    prepared = pipe.prepare(
        args.dataset,
        pool=args.pool,
        noise=args.noise or "medium",
        seed=args.seed,
        test_size=args.test_size,
        split=args.split,
        benchmarks=args.benchmarks,
        progress=args.progress,
    )
    ev = pipe.run_evaluation(
        prepared,
        strategies=args.strategies,
        max_depth=args.max_depth,
        lambdas=args.lambdas,
        n_trials=args.trials,
        n_boot=args.bootstrap,
        seed=args.seed,
        n_threads=args.threads,
        quality_bounds=args.quality_bounds,
        progress=args.progress,
    )
    print(pipe.write_report(ev, prepared, args.out, args.json))
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    pipe = _pipeline()
    args.seed = args.seed or 0
    started = time.perf_counter()
    results = pipe.reproduce(
        args.dataset,
        pools=args.pools,
        noises=args.noise,
        seed=args.seed,
        n_boot=args.bootstrap,
        n_threads=args.threads,
        reference_variance_quirk=args.reference_variance_quirk,
        uncertainty_scale=args.uncertainty_scale,
        progress=args.progress,
        on_column=lambda line: print(line, file=sys.stderr),
    )
    print(
        pipe.reproduce_report(
            results,
            reference_variance_quirk=args.reference_variance_quirk,
            seconds=time.perf_counter() - started,
            json_path=args.json,
        )
    )
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    print(_pipeline().list_datasets())
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cascade-routing",
        description="Evaluate routing, cascading and cascade routing of LLMs on logged data.",
    )
    parser.add_argument("--version", action="version", version=f"cascade-routing {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log more (-vv for debug, with tracebacks)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common_flags(p: argparse.ArgumentParser, bootstrap: int) -> None:
        p.add_argument(
            "--progress",
            dest="progress",
            action="store_true",
            default=None,
            help="show progress bars for reading and fitting (default: on a terminal)",
        )
        p.add_argument(
            "--no-progress",
            dest="progress",
            action="store_false",
            help="never show a progress bar",
        )
        p.add_argument(
            "--threads",
            type=_int_type(0, 1024),
            default=1,
            help="threads for replays (0 = one per core)",
        )
        p.add_argument(
            "--seed",
            type=_int_type(0, 2**32 - 1),
            default=None,
            help="seed of estimators, splits, fits and bootstrap (default 0)",
        )
        p.add_argument(
            "--bootstrap",
            type=_bootstrap,
            default=bootstrap,
            help=f"bootstrap replicates for the AUC intervals; 0 = no intervals "
            f"(default {bootstrap})",
        )

    bundled = ", ".join(sorted(BUNDLED))
    ev = sub.add_parser(
        "evaluate", help="AUC of each strategy on a dataset, with a plot and a JSON of all points"
    )
    ev.add_argument(
        "dataset",
        nargs="?",
        default=DEFAULT_DATASET,
        help=f"bundled name ({bundled}) or a data folder; default {DEFAULT_DATASET}",
    )
    ev.add_argument(
        "--pool",
        help=f"models: a paper pool size for RouterBench (3, 5, 11) or comma-separated names "
        f"(at most {MAX_MODELS})",
    )
    ev.add_argument(
        "--noise",
        default=None,
        choices=sorted(NOISE_LEVELS),
        help="noise of the simulated estimators (data without confidences; default medium)",
    )
    ev.add_argument(
        "--estimators",
        choices=["tables", "learned"],
        default="tables",
        help="tables: estimators built from what the data declares, or the paper's simulated "
        "ones; learned: cascade_routing.learn fitted on each split's training rows "
        "(docs/estimators.md §10)",
    )
    ev.add_argument(
        "--seeds",
        type=_seeds,
        help="one random split per seed, e.g. 0,1,2: mean AUC with bootstrap intervals",
    )
    ev.add_argument(
        "--plot",
        metavar="PATH",
        help="with --estimators learned: write the reliability diagram of every model here",
    )
    ev.add_argument(
        "--strategies",
        type=_strategies,
        default=list(STRATEGY_LABELS),
        help=f"comma-separated subset of {', '.join(STRATEGY_LABELS)}",
    )
    ev.add_argument(
        "--max-depth",
        type=_int_type(1, MAX_MODELS),
        default=5,
        help="largest supermodel of cascade routing",
    )
    ev.add_argument("--lambdas", choices=["constant", "per_step"], default="constant")
    ev.add_argument("--trials", type=_int_type(1), default=200, help="per-step search evaluations")
    ev.add_argument(
        "--quality-bounds",
        metavar="LO,HI",
        type=_bounds,
        help="clip quality samples to [LO, HI] in expected maxima, e.g. 0,1 for probabilities",
    )
    ev.add_argument(
        "--benchmarks",
        help="llm_cascades folders: comma-separated benchmarks, or 'all' (default: mmlu)",
    )
    ev.add_argument(
        "--split",
        choices=["auto", "source", "random"],
        default="auto",
        help="auto: the paper's split for RouterBench, the source's split where the data has "
        "one, else random",
    )
    ev.add_argument(
        "--test-size", type=_fraction, default=0.5, help="test fraction of a random split"
    )
    ev.add_argument("--out", default=DEFAULT_OUT, help="folder for the plot and the JSON")
    ev.add_argument("--json", help="where to write the JSON of all points (default: in --out)")
    common_flags(ev, bootstrap=1000)
    ev.set_defaults(func=cmd_evaluate)

    rp = sub.add_parser(
        "reproduce", help="the paper's RouterBench grid beside its published table"
    )
    rp.add_argument(
        "--dataset", default=DEFAULT_DATASET, help="RouterBench data (bundled name or folder)"
    )
    rp.add_argument("--pools", type=_pools, default=[3, 5, 11], help="pool sizes, e.g. 3,5,11")
    rp.add_argument(
        "--noise",
        type=_noises,
        default=["low", "medium", "high"],
        help="noise levels, e.g. low,medium,high",
    )
    rp.add_argument("--json", help="write every point of every configuration here")
    rp.add_argument(
        "--reference-variance-quirk",
        action="store_true",
        help="use the variance where the reference code (wrongly) uses it instead of the "
        "standard deviation, to match its numbers",
    )
    rp.add_argument(
        "--uncertainty-scale",
        default=None,
        help="multiply the ex-ante variances by this number, or 'fit' to pick the scale on "
        "each column's training rows (predicted against realised gains of running a model)",
    )
    common_flags(rp, bootstrap=200)
    rp.set_defaults(func=cmd_reproduce)

    ds = sub.add_parser("datasets", help="list the bundled datasets with their origin and licence")
    ds.set_defaults(func=cmd_datasets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for a usage error)."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["serve"]:  # the gateway: its own parser, needs the [serve] extra
        from .serve.__main__ import main as serve_main

        return serve_main(args_in[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already reported
        return exc.code if isinstance(exc.code, int) else 2
    level = (logging.ERROR, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "progress", False) is None:
        args.progress = sys.stderr.isatty()
    errors: tuple[type[Exception], ...] = (CliError,)
    if pipeline is not None:
        errors += (pipeline.UsageError,)
    try:
        return int(args.func(args))
    except errors as exc:
        if args.verbose >= 2:
            raise
        message = " ".join(str(exc).split())  # one line
        print(f"cascade-routing: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
