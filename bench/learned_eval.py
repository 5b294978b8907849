"""AUC of every strategy with the learned estimators on the llm_cascades benchmarks.

A thin wrapper over ``cascade-routing evaluate --estimators learned``
(:func:`cascade_routing.experiments.pipeline.evaluate_splits`, which calls
:mod:`cascade_routing.experiments.learned_evaluation`): per benchmark and random split, fit
:class:`~cascade_routing.learn.LearnedQuality` and the cost model on train, fit every strategy
on train with the cross-fitted estimates and replay on test. It prints one row per benchmark
(mean AUC ×100 over the splits) and the mean of "CR − best other" over the benchmarks.

Usage (from the repository root, with the package on ``PYTHONPATH``)::

    python bench/learned_eval.py --benchmarks mmlu --seeds 0,1,2
    python bench/learned_eval.py --benchmarks all --seeds 0,1,2 --json out.json
    python bench/learned_eval.py --timing            # predict latency, one query, 9 answers
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from cascade_routing.experiments import datasets
from cascade_routing.experiments.learned_evaluation import learned_inputs
from cascade_routing.experiments.pipeline import evaluate_splits
from cascade_routing.experiments.settings import STRATEGY_LABELS
from cascade_routing.learn import LearnedQuality

DATA = Path("/work/shared/data/llm_cascades_confidence")
BENCHMARKS = ("mmlu", "medmcqa", "triviaqa", "truthfulqa", "gsm8k")
METHODS = tuple(STRATEGY_LABELS)

log = logging.getLogger("learned_eval")


def load(bench: str, root: Path = DATA) -> dict[str, Any]:
    """Queries, ModelAnswers and quality of one benchmark, as the learned estimator reads them."""
    data = datasets.load(root, benchmarks=[bench])
    inputs = learned_inputs(data)
    return {
        "models": list(data.models),
        "queries": inputs.queries,
        "answers": inputs.answers,
        "quality": np.asarray(data.quality),
    }


def timing(bench: str = "mmlu", repeats: int = 2000, load_root: Path = DATA) -> dict[str, float]:
    """Median and p99 of ``predict`` for one query with 0..9 answers (cache warm and cold)."""
    data = load(bench, load_root)
    n = len(data["queries"])
    train = np.arange(0, n, 2)
    q_tr = [data["queries"][i] for i in train]
    a_tr = [data["answers"][i] for i in train]
    t0 = time.perf_counter()
    est = LearnedQuality(data["models"], seed=0).fit(q_tr, a_tr, data["quality"][train])
    fit_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    k = len(data["models"])
    out: dict[str, float] = {"fit_seconds": fit_s, "n_train": float(train.size)}
    for label, n_ans, warm in (
        ("none_warm", 0, True),
        ("four_warm", 4, True),
        ("nine_warm", 9, True),
        ("nine_cold", 9, False),
    ):
        times = []
        for r in range(repeats):
            i = int(rng.integers(1, n, 1)[0]) | 1  # test rows (odd)
            i = min(i, n - 1)
            if i % 2 == 0:
                i -= 1
            q = dict(data["queries"][i])
            if not warm:
                q["text"] = q["text"] + f" #{r}"  # a new text: the ex-ante cache misses
            ran = rng.permutation(k)[:n_ans]
            row = [data["answers"][i][j] if j in ran else None for j in range(k)]
            if warm:
                est.predict([q], [row])
            s = time.perf_counter()
            est.predict([q], [row])
            times.append(time.perf_counter() - s)
        t = np.asarray(times) * 1e6
        out[f"{label}_median_us"] = float(np.median(t))
        out[f"{label}_p99_us"] = float(np.quantile(t, 0.99))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(DATA), help="folder in the llm_cascades layout")
    p.add_argument("--benchmarks", default="mmlu", help="comma list or 'all'")
    p.add_argument("--seeds", default="0,1,2", help="comma list of split seeds")
    p.add_argument("--test-size", type=float, default=0.5)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--bootstrap", type=int, default=200, help="replicates of the intervals")
    p.add_argument("--est-depth", type=int, default=None, help="max_depth of LearnedQuality")
    p.add_argument("--json", help="write every summary here")
    p.add_argument("--timing", action="store_true", help="only measure predict latency")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("cascade_routing").setLevel(logging.ERROR)
    if args.timing:
        print(json.dumps(timing(load_root=Path(args.data)), indent=1))
        return 0
    methods = [m for m in args.methods.split(",") if m]
    benches = BENCHMARKS if args.benchmarks == "all" else tuple(args.benchmarks.split(","))
    seeds = [int(s) for s in args.seeds.split(",")]
    options = None if args.est_depth is None else {"max_depth": args.est_depth}
    summaries: dict[str, Any] = {}
    for bench in benches:
        t = time.perf_counter()
        run = evaluate_splits(
            args.data,
            estimators="learned",
            seeds=seeds,
            benchmarks=bench,
            test_size=args.test_size,
            strategies=methods,
            n_boot=args.bootstrap,
            estimator_options=options,
        )
        summaries[bench] = run.summary.to_dict()
        log.info(
            "%s\n%s\n(%.0f s)",
            run.description,
            run.summary.format_table(),
            time.perf_counter() - t,
        )
    cols = ("linear", *methods)
    print(
        f"{'benchmark':<11}" + "".join(f"{c[:17]:>18}" for c in cols) + f"{'CR - best other':>17}"
    )
    gaps = []
    for bench, summary in summaries.items():
        line = f"{bench:<11}" + "".join(f"{100 * summary['auc'][c]:18.2f}" for c in cols)
        gap = summary["cr_minus_best_other"]
        if gap is not None:
            gaps.append(100 * gap)
            line += f"{100 * gap:17.2f}"
        print(line)
    if gaps:
        print(
            f"mean CR - best other: {np.mean(gaps):.2f} over {len(gaps)} benchmarks, "
            f"{len(seeds)} split(s) each"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(summaries, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
