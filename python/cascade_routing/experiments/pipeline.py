"""One pipeline for the command line: data → estimators → strategies → evaluation → report.

* :func:`prepare` loads the data, picks the models and the split, and builds the estimators
  from what the data declares it has (:attr:`~.datasets.Dataset.estimator_kind`): raw
  confidences, group priors, or nothing (the paper's simulated estimators).
* :func:`run_evaluation` fits and replays the strategies (:func:`~.evaluation.evaluate`).
* :func:`write_report` writes the plot and the JSON and returns the text to show.
* :func:`reproduce` runs the paper's RouterBench grid; :func:`reproduce_table` sets it beside
  the published numbers (:mod:`.published`).

Every mistake in the request or the data raises :class:`UsageError` with a one-line message
that names the flag or the file, before any long computation where possible.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from ..engine import DEFAULT_MAX_WORK, largest_depth_within, search_work
from ..validation import MAX_MODELS
from . import datasets, real_estimators, simulation
from .datasets import Dataset
from .evaluation import Evaluation, SplitSummary, evaluate, summarize_splits
from .learned_evaluation import (
    LEARNED_MAX_MODELS,
    LearnedSplit,
    calibration_plot,
    evaluate_learned,
    learned_inputs,
)
from .published import PAPER_AUC, REFERENCE_SUBSET_AUC
from .settings import NOISE_LEVELS, PAPER_POOLS, ROUTERBENCH_MODELS, STRATEGY_LABELS
from .tables import (
    TwoPhaseTables,
    fit_variance_scale,
    with_reference_variance_quirk,
    with_variance_scale,
)

logger = logging.getLogger(__name__)

__all__ = [
    "ESTIMATORS",
    "ESTIMATOR_CHOICES",
    "Prepared",
    "SplitsRun",
    "UsageError",
    "evaluate_splits",
    "list_datasets",
    "prepare",
    "reproduce",
    "reproduce_table",
    "run_evaluation",
    "write_report",
    "write_splits_report",
]

#: ``--estimators``: the tables built from what the data declares (or the paper's simulated
#: ones), or the estimators of :mod:`cascade_routing.learn` fitted on each split.
ESTIMATOR_CHOICES = ("tables", "learned")

#: Models kept (spread over the cost range) when a dataset has more than 11 and no pool is given.
SPREAD_POOL_SIZE = 10

_REPRODUCE_NOTE = (
    "\nNote: the data differ from the paper's. This is a 3,150-query subset of RouterBench "
    "(ARC-Challenge, MBPP, Winogrande; probably the 5-shot file), so absolute numbers are "
    "not comparable with the paper's column; the reference-code column ran the same subset "
    "and protocol."
)


class UsageError(ValueError):
    """A mistake in the request or the data; the command line shows it as one line."""


@dataclass(frozen=True)
class _EstimatorKind:
    build: Callable[..., TwoPhaseTables]
    label: str


#: Estimators built from what a dataset declares it has (``Dataset.estimator_kind``);
#: ``"simulated"`` (nothing declared) uses the paper's simulated estimators instead.
ESTIMATORS: dict[str, _EstimatorKind] = {
    "confidence": _EstimatorKind(
        real_estimators.confidence_estimates, "confidence-based estimators"
    ),
    "group_priors": _EstimatorKind(
        real_estimators.swebench_estimates,
        "repository-prior ex-ante, resolved-flag post-hoc estimators",
    ),
}


@dataclass(frozen=True)
class Prepared:
    """Data and estimators ready for the strategies.

    ``tables`` estimates every row of ``dataset``; ``train_rows`` and ``test_rows`` index it.
    ``description`` says what was chosen (models, estimators, split) in one line.
    """

    dataset: Dataset
    tables: TwoPhaseTables
    train_rows: NDArray[np.int64]
    test_rows: NDArray[np.int64]
    description: str


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args and not isinstance(exc, ValueError):
        return str(exc.args[0])
    return str(exc)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Loader and estimator mistakes (missing file, bad column, ...) as :class:`UsageError`."""
    try:
        yield
    except UsageError:
        raise
    except (FileNotFoundError, KeyError, ValueError, TypeError) as exc:
        raise UsageError(_message(exc)) from exc


# --------------------------------------------------------------------------- progress


@contextmanager
def progress_bar(enabled: bool, desc: str) -> Iterator[Callable[[int, int], None] | None]:
    """A tqdm bar on stderr driven by ``progress(done, total)`` calls, or ``None``."""
    if not enabled:
        yield None
        return
    bar: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(total=total, desc=desc, leave=False, file=sys.stderr)
        bar["bar"].n = done
        bar["bar"].refresh()

    try:
        yield update
    finally:
        if "bar" in bar:
            bar["bar"].close()


# --------------------------------------------------------------------------- data


def load_data(dataset: str, benchmarks: str | None = None, *, progress: bool = False) -> Dataset:
    """A bundled dataset or a data folder; ``benchmarks`` for llm_cascades folders only."""
    kwargs: dict[str, Any] = {}
    with _user_errors():
        if benchmarks:
            is_folder = dataset not in datasets.bundled_datasets() and Path(dataset).is_dir()
            if not is_folder or datasets.detect_layout(dataset) != "llm_cascades":
                raise UsageError("--benchmarks applies to a folder of llm_cascades data only")
            chosen = tuple(b.strip() for b in benchmarks.split(",") if b.strip())
            kwargs["benchmarks"] = None if benchmarks == "all" else chosen
        with datasets.show_progress(progress):
            return datasets.load(dataset, **kwargs)


def is_paper_routerbench(data: Dataset) -> bool:
    """Whether ``data`` is RouterBench with the paper's 11 models (its protocol applies)."""
    return data.layout == "routerbench" and set(data.models) == set(ROUTERBENCH_MODELS)


def resolve_pool(text: str | None, data: Dataset) -> list[str] | None:
    """``--pool``: a paper pool size (RouterBench) or comma-separated model names."""
    if text is None:
        return None
    if text.strip().isdigit() and is_paper_routerbench(data):
        size = int(text)
        if size not in PAPER_POOLS:
            raise UsageError(f"--pool {size}: the paper's pools have {sorted(PAPER_POOLS)} models")
        return list(PAPER_POOLS[size])
    names = [m.strip() for m in text.split(",") if m.strip()]
    if not names:
        raise UsageError("--pool names no model")
    if len(set(names)) != len(names):
        raise UsageError(f"--pool repeats a model: {names}")
    if len(names) > MAX_MODELS:
        raise UsageError(f"--pool names {len(names)} models; at most {MAX_MODELS} are supported")
    unknown = [m for m in names if m not in data.models]
    if unknown:
        raise UsageError(
            f"--pool names unknown models {unknown}; the dataset has: {', '.join(data.models)}"
        )
    return names


def _spread_pool(data: Dataset, train: NDArray[np.int64], size: int) -> list[str]:
    """``size`` models spread evenly over the range of mean training costs."""
    order = np.argsort(data.cost[train].mean(axis=0), kind="stable")
    picks = np.unique(np.round(np.linspace(0, len(order) - 1, size)).astype(int))
    return [data.models[i] for i in order[picks]]


def _split(
    data: Dataset, split: str, test_size: float, seed: int
) -> tuple[NDArray[np.int64], NDArray[np.int64], str]:
    """Train and test rows, and the split's name: the source's own where asked and present."""
    if split not in ("auto", "source", "random"):
        raise UsageError(f"--split must be auto, source or random, got {split!r}")
    if split != "random" and "source_split" in data.features:
        labels = np.asarray(data.features["source_split"]).astype(str)
        train, test = np.flatnonzero(labels == "train"), np.flatnonzero(labels == "test")
        if train.size and test.size:
            return train, test, "the source's split"
        if split == "source":
            raise UsageError("--split source: the data has no train and test rows of its own")
    elif split == "source":
        raise UsageError("--split source: the data has no split of its own; use auto or random")
    train, test = data.split_rows(test_size=test_size, seed=seed)
    return train, test, "random split"


def _check_evaluable(data: Dataset, test: NDArray[np.int64], where: str) -> None:
    """Refuse, before any fit, data on which the cost–quality curve is undefined."""
    if data.n_models < 2:
        raise UsageError(
            f"{where}: only {data.n_models} model; routing and cascading need at least 2 "
            "(choose them with --pool)"
        )
    if data.n_models > MAX_MODELS:
        raise UsageError(
            f"{where}: {data.n_models} models; at most {MAX_MODELS} are supported (choose "
            "some with --pool)"
        )
    mean_cost = data.cost[test].mean(axis=0)
    if not mean_cost.max() > mean_cost.min():
        raise UsageError(
            f"{where}: every model has the same mean test cost ({mean_cost[0]:.6g}), so the "
            "cost–quality curve has no width; choose models of different costs with --pool"
        )


def prepare(
    dataset: str | Dataset,
    *,
    pool: str | None = None,
    noise: str = "medium",
    seed: int = 0,
    test_size: float = 0.5,
    split: str = "auto",
    benchmarks: str | None = None,
    progress: bool = False,
) -> Prepared:
    """Load a dataset and build its estimators and split.

    RouterBench with the paper's 11 models uses the paper's simulated estimators at the
    noise level and the paper's split (unless ``split="random"``). Otherwise the estimators
    come from what the data declares (:data:`ESTIMATORS`): confidences, group priors, or
    nothing, in which case the paper's simulated estimators are used at the noise level. With
    ``split="auto"`` data with a split of its own (``source_split``) uses it; ``"random"``
    always splits at random (``test_size``, ``seed``).
    """
    if noise not in NOISE_LEVELS:
        raise UsageError(f"--noise: unknown level {noise!r}; use {', '.join(NOISE_LEVELS)}")
    if isinstance(dataset, Dataset):
        data, dataset_label = dataset, f"dataset {dataset.name!r}"
    else:
        data, dataset_label = load_data(dataset, benchmarks, progress=progress), str(dataset)
    if split not in ("auto", "source", "random"):
        raise UsageError(f"--split must be auto, source or random, got {split!r}")
    with _user_errors():
        if is_paper_routerbench(data) and split != "random":
            paper_pool = resolve_pool(pool, data) or list(PAPER_POOLS[5])
            run = simulation.routerbench_run(data, paper_pool, noise, seed=seed)
            _check_evaluable(run.dataset, run.test_rows, "--pool")
            desc = (
                f"{data.name}, {len(paper_pool)} models, simulated estimators "
                f"({noise} noise), paper split"
            )
            return Prepared(run.dataset, run.estimates, run.train_rows, run.test_rows, desc)
        chosen = resolve_pool(pool, data)
        train, test, split_name = _split(data, split, test_size, seed)
        if chosen is None and data.n_models > 11:
            chosen = _spread_pool(data, train, SPREAD_POOL_SIZE)
        if chosen is not None:
            data = data.select_models(chosen)
        where = "--pool" if pool is not None else f"{dataset_label}"
        _check_evaluable(data, test, where)
        kind = data.estimator_kind
        if kind in ESTIMATORS:
            tables = ESTIMATORS[kind].build(data, train, seed=seed)
            label = ESTIMATORS[kind].label
        else:
            rows = np.concatenate([train, test])
            tables = simulation.simulate_estimates(
                data.quality[rows], data.cost[rows], noise, seed
            )
            data = data.subset(rows)
            train, test = np.arange(train.size), np.arange(train.size, rows.size)
            label = f"simulated estimators ({noise} noise)"
    desc = f"{data.name}, {data.n_models} models, {label}, {split_name}"
    return Prepared(data, tables, np.asarray(train), np.asarray(test), desc)


# --------------------------------------------------------------------------- evaluation


def run_evaluation(
    prepared: Prepared,
    *,
    strategies: Sequence[str] = tuple(STRATEGY_LABELS),
    max_depth: int | None = 5,
    lambdas: str = "constant",
    n_trials: int = 200,
    n_boot: int = 1000,
    seed: int = 0,
    n_threads: int = 1,
    quality_bounds: tuple[float, float] | None = None,
    progress: bool = False,
) -> Evaluation:
    """Fit every strategy at every budget on the training rows and replay it on the test rows."""
    _check_depth(prepared.dataset.n_models, strategies, max_depth)
    with progress_bar(progress, "fitting") as update, _user_errors():
        return evaluate(
            prepared.dataset,
            prepared.tables,
            prepared.train_rows,
            prepared.test_rows,
            strategies=strategies,
            max_depth=max_depth,
            lambdas=lambdas,
            n_trials=n_trials,
            n_boot=n_boot,
            seed=seed,
            n_threads=n_threads,
            progress=update,
            name=prepared.dataset.name,
            quality_bounds=quality_bounds,
        )


def _check_depth(k: int, strategies: Sequence[str], max_depth: int | None) -> None:
    if "cascade_routing" in strategies and search_work(k, 0, max_depth, 128) > DEFAULT_MAX_WORK:
        # The strategy would refuse it too (docs/algorithm.md §11); here the flag is named.
        deepest = largest_depth_within(k, 128, DEFAULT_MAX_WORK)
        raise UsageError(
            f"--max-depth {max_depth}: cascade routing over {k} models could score "
            f"{search_work(k, 0, max_depth, 1):,} supermodels per decision, over the work "
            f"cap; pass --max-depth {deepest} or less"
        )


def write_report(
    ev: Evaluation, prepared: Prepared, out: str | Path, json_path: str | Path | None = None
) -> str:
    """Write the plot and the JSON of all points; return the text report."""
    folder = Path(out)
    stem = Path(str(ev.name)).name.replace("/", "_")
    png = folder / f"{stem}.png"
    target = Path(json_path) if json_path else folder / f"{stem}.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        ev.plot(png, title=prepared.description)
        ev.save_json(target)
    except OSError as exc:
        raise UsageError(f"cannot write {exc.filename or folder}: {exc.strerror or exc}") from exc
    return "\n".join(
        [
            prepared.description,
            ev.format_table(),
            f"plot: {png}\npoints: {target}\n({ev.seconds:.1f} s)",
        ]
    )


# --------------------------------------------------------------------------- several splits


@dataclass
class SplitsRun:
    """Evaluations over several splits (one per seed) and their summary.

    ``learned`` holds the per-split calibration of the learned estimators (``None`` with the
    tables).
    """

    description: str
    evaluations: list[Evaluation]
    summary: SplitSummary
    learned: list[LearnedSplit] | None
    seconds: float


def _check_seeds(seeds: Sequence[int]) -> list[int]:
    out = [int(s) for s in seeds]
    if not out:
        raise UsageError("--seeds names no seed")
    if len(set(out)) != len(out):
        raise UsageError(f"--seeds repeats a seed: {out}; each seed is one random split")
    return out


def evaluate_splits(
    dataset: str | Dataset,
    *,
    estimators: str = "tables",
    seeds: Sequence[int] = (0,),
    pool: str | None = None,
    noise: str = "medium",
    test_size: float = 0.5,
    split: str = "auto",
    benchmarks: str | None = None,
    strategies: Sequence[str] = tuple(STRATEGY_LABELS),
    max_depth: int | None = 5,
    lambdas: str = "constant",
    n_trials: int = 200,
    n_boot: int = 1000,
    n_threads: int = 1,
    quality_bounds: tuple[float, float] | None = None,
    estimator_options: dict[str, Any] | None = None,
    progress: bool = False,
) -> SplitsRun:
    """Evaluate on one split per seed and summarise: mean AUC with bootstrap intervals.

    With ``estimators="tables"`` each seed is :func:`prepare` + :func:`run_evaluation` (a
    random split unless ``split="source"``, which a single seed only may ask for). With
    ``"learned"`` each seed fits :mod:`cascade_routing.learn`'s estimators on its training
    rows (:func:`~.learned_evaluation.evaluate_learned`); ``split="auto"`` is then random,
    and ``quality_bounds`` defaults to ``(0, 1)`` (the estimates are probabilities, and the
    estimator fits its uncertainty scale under the same bounds).
    """
    started = time.perf_counter()
    if estimators not in ESTIMATOR_CHOICES:
        raise UsageError(f"--estimators must be one of {', '.join(ESTIMATOR_CHOICES)}")
    seeds = _check_seeds(seeds)
    if split == "source" and len(seeds) > 1:
        raise UsageError(
            "--split source with several --seeds: the source's split is one split; use "
            "--split random (or auto) to average over random splits"
        )
    if isinstance(dataset, Dataset):
        data = dataset
    else:
        data = load_data(dataset, benchmarks, progress=progress)
    if estimators == "tables":
        mode = split if len(seeds) == 1 else "random" if split == "auto" else split
        evaluations, desc = [], ""
        if pool is None and data.n_models > 11 and not is_paper_routerbench(data):
            # One pool for every split (chosen on the first split's training rows), so the
            # splits average the same models.
            with _user_errors():
                first_train = _split(data, mode, test_size, seeds[0])[0]
            pool = ",".join(_spread_pool(data, first_train, SPREAD_POOL_SIZE))
        for seed in seeds:
            prepared = prepare(
                data, pool=pool, noise=noise, seed=seed, test_size=test_size, split=mode
            )
            desc = prepared.description
            evaluations.append(
                run_evaluation(
                    prepared,
                    strategies=strategies,
                    max_depth=max_depth,
                    lambdas=lambdas,
                    n_trials=n_trials,
                    n_boot=n_boot,
                    seed=seed,
                    n_threads=n_threads,
                    quality_bounds=quality_bounds,
                    progress=progress,
                )
            )
        with _user_errors():
            summary = summarize_splits(evaluations, seeds, n_boot=n_boot, seed=seeds[0])
        return SplitsRun(desc, evaluations, summary, None, time.perf_counter() - started)
    bounds = (0.0, 1.0) if quality_bounds is None else quality_bounds
    mode = "random" if split == "auto" else split
    with _user_errors():
        chosen = resolve_pool(pool, data)
        rows = [_split(data, mode, test_size, seed) for seed in seeds]
        if chosen is None and data.n_models > 11:
            chosen = _spread_pool(data, rows[0][0], SPREAD_POOL_SIZE)
        if chosen is not None:
            data = data.select_models(chosen)
        if data.n_models > LEARNED_MAX_MODELS:
            raise UsageError(
                f"--estimators learned takes at most {LEARNED_MAX_MODELS} models (a covariance "
                f"per run-set); the data has {data.n_models}: choose some with --pool"
            )
        for _, test, _ in rows:
            _check_evaluable(data, test, "--pool" if pool is not None else data.name)
        _check_depth(data.n_models, strategies, max_depth)
        inputs = learned_inputs(data)
    learned: list[LearnedSplit] = []
    total_fits = [0]
    with progress_bar(progress, "fitting") as update, _user_errors():
        for number, (seed, (train, test, _)) in enumerate(zip(seeds, rows)):

            def report(done: int, total: int, number: int = number) -> None:
                if update is not None:
                    update(number * total + done, total * len(seeds))

            learned.append(
                evaluate_learned(
                    data,
                    train,
                    test,
                    inputs=inputs,
                    strategies=strategies,
                    max_depth=max_depth,
                    lambdas=lambdas,
                    n_trials=n_trials,
                    n_boot=n_boot,
                    seed=seed,
                    n_threads=n_threads,
                    quality_bounds=bounds,
                    estimator_options=estimator_options,
                    progress=report,
                )
            )
            total_fits[0] += 1
        evaluations = [s.evaluation for s in learned]
        summary = summarize_splits(evaluations, seeds, n_boot=n_boot, seed=seeds[0])
    split_name = rows[0][2] if mode != "random" else f"random splits, test fraction {test_size}"
    desc = (
        f"{data.name}, {data.n_models} models, {inputs.describe()}; "
        f"{learned[0].evaluation.settings['cost_model']}; {split_name}; quality bounds "
        f"{bounds[0]:g},{bounds[1]:g}"
    )
    return SplitsRun(desc, evaluations, summary, learned, time.perf_counter() - started)


def write_splits_report(
    run: SplitsRun,
    out: str | Path,
    json_path: str | Path | None = None,
    plot_path: str | Path | None = None,
) -> str:
    """Write the first split's cost–quality plot, the JSON of every split and the summary,
    and (learned estimators) the calibration plot; return the text report."""
    folder = Path(out)
    first = run.evaluations[0]
    stem = Path(str(first.name)).name.replace("/", "_")
    png = folder / f"{stem}.png"
    target = Path(json_path) if json_path else folder / f"{stem}.json"
    splits = (
        [s.to_dict() for s in run.learned]
        if run.learned is not None
        else [ev.to_dict() for ev in run.evaluations]
    )
    payload = {"description": run.description, "summary": run.summary.to_dict(), "splits": splits}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        kind = "learned" if run.learned is not None else "table"
        first.plot(
            png, title=f"{first.name}, {kind} estimators, split seed {run.summary.seeds[0]}"
        )
        target.write_text(json.dumps(payload, indent=2))
        if plot_path is not None and run.learned is not None:
            calibration_plot(run.learned, plot_path, title=f"{first.name}: calibration")
    except OSError as exc:
        raise UsageError(f"cannot write {exc.filename or folder}: {exc.strerror or exc}") from exc
    lines = [
        run.description,
        f"{first.name}: {len(first.models)} models, {first.n_train} train / {first.n_test} "
        f"test queries per split",
        run.summary.format_table(),
    ]
    if run.learned is not None:
        lines.append(_calibration_table(run.learned))
    lines.append(f"plot (seed {run.summary.seeds[0]}): {png}")
    if plot_path is not None and run.learned is not None:
        lines.append(f"calibration plot: {plot_path}")
    lines.append(f"points: {target}\n({run.seconds:.1f} s)")
    return "\n".join(lines)


def _calibration_table(learned: Sequence[LearnedSplit]) -> str:
    """Brier score and ECE per model once it has run, mean over splits (test rows)."""
    lines = [
        "calibration on test rows, model's own estimate once it has run (mean over splits):",
        f"{'model':<28} {'Brier raw':>10} {'uncal.':>8} {'calib.':>8} "
        f"{'ECE raw':>9} {'uncal.':>8} {'calib.':>8}",
    ]
    for m in learned[0].calibration:

        def mean(key: str, m: str = m) -> float:
            return float(np.mean([s.calibration[m]["own"][key] for s in learned]))

        cells = [
            mean(f"{metric}_{kind}")
            for metric in ("brier", "ece")
            for kind in ("raw", "uncalibrated", "calibrated")
        ]
        text = [("     -" if math.isnan(v) else f"{v:.3f}") for v in cells]
        lines.append(
            f"{m[:28]:<28} {text[0]:>10} {text[1]:>8} {text[2]:>8} "
            f"{text[3]:>9} {text[4]:>8} {text[5]:>8}"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- reproduce


def reproduce(
    dataset: str = "routerbench",
    *,
    pools: Sequence[int] = (3, 5, 11),
    noises: Sequence[str] = ("low", "medium", "high"),
    seed: int = 0,
    n_boot: int = 200,
    n_threads: int = 1,
    reference_variance_quirk: bool = False,
    uncertainty_scale: str | float | None = None,
    progress: bool = False,
    on_column: Callable[[str], None] | None = None,
) -> dict[str, Evaluation]:
    """The paper's RouterBench grid: one evaluation per (pool size, noise level) column.

    ``uncertainty_scale`` multiplies the ex-ante variances: a number, or ``"fit"`` for the
    scale :func:`~.tables.fit_variance_scale` picks on each column's training rows (recorded
    in ``settings["uncertainty_scale"]`` of each evaluation). ``on_column`` receives one line
    of timings per column as it finishes.
    """
    if uncertainty_scale is not None:
        if reference_variance_quirk:
            raise UsageError(
                "--uncertainty-scale and --reference-variance-quirk both change the "
                "uncertainty; pass one of them"
            )
        if uncertainty_scale != "fit":
            try:
                uncertainty_scale = float(uncertainty_scale)
            except (TypeError, ValueError):
                uncertainty_scale = -1.0
            if not (uncertainty_scale >= 0 and np.isfinite(uncertainty_scale)):
                raise UsageError("--uncertainty-scale must be 'fit' or a number >= 0")
    bad = [p for p in pools if p not in PAPER_POOLS]
    if bad:
        raise UsageError(
            f"--pools: the paper's pools have {sorted(PAPER_POOLS)} models, not {bad}"
        )
    bad_n = [n for n in noises if n not in NOISE_LEVELS]
    if bad_n:
        raise UsageError(f"--noise: unknown levels {bad_n}; use {', '.join(NOISE_LEVELS)}")
    data = load_data(dataset, progress=progress)
    if not is_paper_routerbench(data):
        raise UsageError(
            f"--dataset {dataset}: reproduce needs RouterBench data with the paper's 11 models"
        )
    results: dict[str, Evaluation] = {}
    for size in pools:
        for noise in noises:
            col = f"{size}{noise[0].upper()}"
            t0 = time.perf_counter()
            run = simulation.routerbench_run(data, PAPER_POOLS[size], noise, seed=seed)
            tables = run.estimates
            if reference_variance_quirk:
                tables = with_reference_variance_quirk(tables)
            scale = None
            if uncertainty_scale == "fit":
                train = run.train_rows
                scale, _ = fit_variance_scale(tables, train, run.dataset.quality[train])
            elif uncertainty_scale is not None:
                scale = float(uncertainty_scale)
            if scale is not None:
                tables = with_variance_scale(tables, scale)
            with progress_bar(progress, col) as update:
                results[col] = evaluate(
                    run.dataset,
                    tables,
                    run.train_rows,
                    run.test_rows,
                    max_depth=5,
                    lambdas="constant",
                    n_boot=n_boot,
                    seed=seed,
                    n_threads=n_threads,
                    progress=update,
                    name=col,
                )
            results[col].settings["uncertainty_scale"] = scale
            if on_column is not None:
                parts = ", ".join(
                    f"{STRATEGY_LABELS[k]} {c.fit_seconds + c.replay_seconds:.1f}s"
                    for k, c in results[col].curves.items()
                )
                on_column(f"{col}: {time.perf_counter() - t0:.1f} s ({parts})")
    return results


def reproduce_table(results: dict[str, Evaluation], columns: Sequence[str] | None = None) -> str:
    """This run's AUCs beside the paper's and the reference code's, one cell per column."""
    columns = list(results) if columns is None else list(columns)
    methods = ["linear", *STRATEGY_LABELS]
    head = f"{'method':<18}" + "".join(f"{c:>17}" for c in columns)
    lines = [
        "AUC x100: this run | paper (RouterBench 0-shot) | reference code on this subset",
        head,
    ]
    for m in methods:
        label = STRATEGY_LABELS.get(m, m)
        cells = []
        for c in columns:
            ev = results[c]
            ours = 100 * (ev.linear_auc if m == "linear" else ev.curves[m].auc)
            paper = PAPER_AUC[label].get(c, float("nan"))
            ref = REFERENCE_SUBSET_AUC[label].get(c, float("nan"))
            ref_s = "  -  " if np.isnan(ref) else f"{ref:5.1f}"
            cells.append(f"{ours:6.2f}|{paper:5.1f}|{ref_s}")
        lines.append(f"{label:<18}" + "".join(f"{cell:>17}" for cell in cells))
    return "\n".join(lines)


def reproduce_report(
    results: dict[str, Evaluation],
    *,
    reference_variance_quirk: bool = False,
    seconds: float,
    json_path: str | Path | None = None,
) -> str:
    """The text report of :func:`reproduce`; writes every point to ``json_path`` if given."""
    lines = []
    if reference_variance_quirk:
        lines.append("(with the reference implementation's variance-for-standard-deviation quirk)")
    scales = {c: ev.settings.get("uncertainty_scale") for c, ev in results.items()}
    if any(v is not None for v in scales.values()):
        lines.append(
            "ex-ante variances scaled by: "
            + ", ".join(f"{c} {v:g}" for c, v in scales.items() if v is not None)
        )
    lines += [reproduce_table(results), _REPRODUCE_NOTE, f"total: {seconds:.1f} s"]
    if json_path:
        try:
            Path(json_path).write_text(
                json.dumps({c: ev.to_dict() for c, ev in results.items()}, indent=2)
            )
        except OSError as exc:
            raise UsageError(f"cannot write {json_path}: {exc.strerror or exc}") from exc
        lines.append(f"points: {json_path}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- datasets


def list_datasets() -> str:
    """The bundled datasets with their size, origin and licence."""
    lines = []
    for name in datasets.bundled_datasets():
        data = datasets.load(name)
        lines.append(
            f"{name}: {data.n_queries} queries x {data.n_models} models (dropped {data.n_dropped})"
        )
        lines.append("  " + data.source.replace("\n", "\n  "))
    return "\n".join(lines)
