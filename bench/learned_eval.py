"""AUC of every strategy with the learned estimators on the llm_cascades benchmarks.

For each benchmark and each random split (train/test of the pooled source splits), fit
:class:`~cascade_routing.learn.LearnedQuality` and :class:`~cascade_routing.learn.PriceTableCost`
on train; fit Router, ThresholdCascade, Cascade (the optimal cascade) and CascadeRouter to
each budget of the grid on train (with the cross-fitted estimates of the training queries, so
multipliers are fitted on estimates as noisy as at test time) and replay them on test. The AUC
is the project's (docs/algorithm.md §8; ``cascade_routing.metrics`` or
``cascade_routing.experiments.metrics``), ×100.

Usage (from the repository root, with the package on ``PYTHONPATH``)::

    python bench/learned_eval.py --benchmarks mmlu --seeds 0
    python bench/learned_eval.py --benchmarks all --seeds 0,1,2 --json out.json
    python bench/learned_eval.py --timing            # predict latency, one query, 9 answers
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import string
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cascade_routing import Cascade, CascadeRouter, QualityEstimate, Router, ThresholdCascade
from cascade_routing.learn import LearnedQuality, ModelAnswer, PriceTableCost

try:  # the metrics module is moving into the experiments subpackage
    from cascade_routing.experiments.metrics import (
        auc_from_queries,
        budget_grid,
        linear_baseline_auc,
    )
except ImportError:  # pragma: no cover - before the move
    from cascade_routing.metrics import auc_from_queries, budget_grid, linear_baseline_auc

DATA = Path("/work/shared/data/llm_cascades_confidence")
BENCHMARKS = ("mmlu", "medmcqa", "triviaqa", "truthfulqa", "gsm8k")
#: US dollars per million tokens (input, output), from the data's README (niagara models.json).
PRICES_PER_M = {
    "llama3.2-1b": (0.10, 0.10),
    "llama3.2-3b": (0.10, 0.10),
    "llama3.1-8b": (0.20, 0.20),
    "llama3.1-70b": (0.90, 0.90),
    "llama3.1-405b": (3.00, 3.00),
    "qwen2.5-32b-coder-instruct": (0.90, 0.90),
    "qwen2.5-72b-instruct": (0.90, 0.90),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
}
METHODS = ("routing", "threshold_cascade", "optimal_cascade", "cascade_routing")

log = logging.getLogger("learned_eval")


# --------------------------------------------------------------------------- parsing answers

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def parse_choice(text: str) -> str | None:
    t = text.strip().upper()
    m = re.match(r"^\(?([A-E])\b", t)
    return m.group(1) if m else None


def parse_open(text: str) -> str | None:
    t = _ARTICLES.sub(" ", text.lower().translate(_PUNCT))
    t = " ".join(t.split())
    return t or None


def parse_number(text: str) -> str | None:
    nums = _NUMBER.findall(text)
    if not nums:
        return None
    value = nums[-1].replace(",", "").rstrip(".")
    try:
        f = float(value)
    except ValueError:
        return None
    return str(int(f)) if f == int(f) else str(f)


PARSERS = {
    "mmlu": parse_choice,
    "medmcqa": parse_choice,
    "triviaqa": parse_open,
    "truthfulqa": parse_open,
    "gsm8k": parse_number,
}


# --------------------------------------------------------------------------- data


def load(bench: str) -> dict[str, Any]:
    """Queries, ModelAnswers, quality and cost of one benchmark (every model on every query)."""
    out = pd.read_csv(DATA / f"outcomes_{bench}.csv")
    ans = pd.read_csv(DATA / f"answers_{bench}.csv", keep_default_na=False)
    prm = pd.read_csv(DATA / f"prompts_{bench}.csv", keep_default_na=False)
    models = list(dict.fromkeys(out["model"]))
    key = ["split", "qid"]
    ids = out[key].drop_duplicates().sort_values(key).reset_index(drop=True)
    table = out.merge(ans, on=key + ["model"], how="left")
    table["answer"] = table["answer"].fillna("")
    prm = ids.merge(prm, on=key, how="left").fillna("")
    parse = PARSERS[bench]
    n, k = len(ids), len(models)
    pos = {(s, q): i for i, (s, q) in enumerate(zip(ids["split"], ids["qid"]))}
    col = {m: j for j, m in enumerate(models)}
    quality = np.full((n, k), np.nan)
    cost = np.full((n, k), np.nan)
    tokens_in = np.zeros((n, k))
    answers: list[list[Any]] = [[None] * k for _ in range(n)]
    for row in table.itertuples(index=False):
        i, j = pos[(row.split, row.qid)], col[row.model]
        quality[i, j] = row.correct
        cost[i, j] = row.cost_usd
        tokens_in[i, j] = row.tokens_in
        answers[i][j] = ModelAnswer(
            text=str(row.answer),
            parsed=parse(str(row.answer)),
            confidence=float(row.raw_confidence),
            cost=float(row.cost_usd),
        )
    keep = ~(np.isnan(quality).any(axis=1) | np.isnan(cost).any(axis=1))
    keep &= np.array([all(a is not None for a in r) for r in answers])
    queries = [
        {
            "text": f"{s}\n{u}",
            "input_tokens": {m: float(tokens_in[i, j]) for j, m in enumerate(models)},
            "id": f"{bench}:{sp}:{q}",
        }
        for i, (s, u, sp, q) in enumerate(
            zip(prm["system_prompt"], prm["user_prompt"], ids["split"], ids["qid"])
        )
    ]
    idx = np.flatnonzero(keep)
    return {
        "models": models,
        "queries": [queries[i] for i in idx],
        "answers": [answers[i] for i in idx],
        "quality": quality[idx],
        "cost": cost[idx],
    }


class _Memo:
    """Caches an estimator's output per (query id, run-set) across the fits of every budget
    (the strategies cache within one fit only). Estimates depend on nothing else."""

    def __init__(self, estimator: Any, quality: bool) -> None:
        self.estimator, self.quality = estimator, quality
        self.cache: dict[Any, Any] = {}

    def predict(self, queries: Any, answers: Any) -> Any:
        keys = [
            (q if isinstance(q, (int, np.integer)) else q["id"], tuple(a is not None for a in row))
            for q, row in zip(queries, answers)
        ]
        miss = [i for i, key in enumerate(keys) if key not in self.cache]
        if miss:
            out = self.estimator.predict([queries[i] for i in miss], [answers[i] for i in miss])
            for pos, i in enumerate(miss):
                self.cache[keys[i]] = (out.mean[pos], out.cov[pos]) if self.quality else out[pos]
        if not self.quality:
            return np.stack([self.cache[key] for key in keys])
        mean = np.stack([self.cache[key][0] for key in keys])
        cov = np.stack([self.cache[key][1] for key in keys])
        return QualityEstimate(mean, cov=cov)


class _TrainRows:
    """A cost estimator view for training queries given as row indices."""

    def __init__(self, estimator: PriceTableCost, queries: list[Any]) -> None:
        self.estimator, self.queries = estimator, queries

    def predict(self, rows: Any, answers: Any) -> Any:
        return self.estimator.predict([self.queries[int(r)] for r in rows], answers)


def make(
    method: str, qe: Any, ce: Any, models: list[str], bounds: tuple[float, float] | None
) -> Any:
    common: dict[str, Any] = {"quality_bounds": bounds, "seed": 0}
    if method == "routing":
        return Router(qe, ce, models, **common)
    if method == "threshold_cascade":
        return ThresholdCascade(qe, ce, models, **common)
    if method == "optimal_cascade":
        return Cascade(qe, ce, models, **common)
    return CascadeRouter(qe, ce, models, max_depth=5, force_order=False, **common)


def run_split(data: dict[str, Any], seed: int, args: argparse.Namespace) -> dict[str, Any]:
    n = len(data["queries"])
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_test = int(round(args.test_size * n))
    test, train = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    models = data["models"]
    q_tr = [data["queries"][i] for i in train]
    a_tr = [data["answers"][i] for i in train]
    q_te = [data["queries"][i] for i in test]
    a_te = [data["answers"][i] for i in test]
    y_tr, y_te = data["quality"][train], data["quality"][test]
    c_tr, c_te = data["cost"][train], data["cost"][test]
    t0 = time.perf_counter()
    quality = LearnedQuality(models, seed=seed, max_depth=args.est_depth).fit(q_tr, a_tr, y_tr)
    t1 = time.perf_counter()
    prices = {m: (p[0] / 1e6, p[1] / 1e6) for m, p in PRICES_PER_M.items() if m in models}
    cost = PriceTableCost(models, prices).fit(q_tr, a_tr)
    calib = quality.calibration_report(q_te, a_te, y_te)
    single_cost, single_quality = c_te.mean(axis=0), y_te.mean(axis=0)
    budgets = budget_grid(single_cost, single_quality, args.per_segment)
    bounds = (0.0, 1.0) if args.bounds else None
    rows_tr = list(range(train.size))
    cf = _Memo(quality.cross_fitted(), True)
    cost_tr = _Memo(_TrainRows(cost, q_tr), False)
    serve_q, serve_c = _Memo(quality, True), _Memo(cost, False)
    result: dict[str, Any] = {
        "seed": seed,
        "n_train": int(train.size),
        "n_test": int(test.size),
        "fit_seconds": t1 - t0,
        "scale": quality.scale_,
        "scale_loss": quality.scale_loss_,
        "linear": 100 * linear_baseline_auc(single_cost, single_quality),
        "budgets": len(budgets),
        "calibration": calib,
    }
    for method in args.methods:
        t2 = time.perf_counter()
        pq_cost = np.empty((len(budgets), test.size))
        pq_quality = np.empty((len(budgets), test.size))
        for b, budget in enumerate(budgets):
            strat = make(method, cf, cost_tr, models, bounds)
            strat.fit(rows_tr, a_tr, y_tr, c_tr, budget=float(budget))
            # Serve: the same policy with the estimators fitted on every training query.
            strat.quality_estimator, strat.cost_estimator = serve_q, serve_c
            res = strat.replay(q_te, a_te, y_te, c_te)
            pq_cost[b], pq_quality[b] = res.cost, res.quality
        result[method] = 100 * auc_from_queries(pq_cost, pq_quality, c_te, y_te)
        log.info("  %s: %.2f (%.1fs)", method, result[method], time.perf_counter() - t2)
    return result


def timing(bench: str = "mmlu", repeats: int = 2000) -> dict[str, float]:
    """Median and p99 of ``predict`` for one query with 0..9 answers (cache warm and cold)."""
    data = load(bench)
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
    p.add_argument("--benchmarks", default="mmlu", help="comma list or 'all'")
    p.add_argument("--seeds", default="0", help="comma list of split seeds")
    p.add_argument("--test-size", type=float, default=0.5)
    p.add_argument("--per-segment", type=int, default=10)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument(
        "--no-bounds",
        dest="bounds",
        action="store_false",
        help="no quality_bounds=(0, 1) in the strategies",
    )
    p.add_argument("--est-depth", type=int, default=None, help="max_depth of LearnedQuality")
    p.add_argument("--json", help="write every result here")
    p.add_argument("--timing", action="store_true", help="only measure predict latency")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("cascade_routing").setLevel(logging.ERROR)
    if args.timing:
        print(json.dumps(timing(), indent=1))
        return 0
    args.methods = [m for m in args.methods.split(",") if m]
    benches = BENCHMARKS if args.benchmarks == "all" else tuple(args.benchmarks.split(","))
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict[str, list[dict[str, Any]]] = {}
    for bench in benches:
        data = load(bench)
        log.info("%s: %d queries x %d models", bench, len(data["queries"]), len(data["models"]))
        for seed in seeds:
            t = time.perf_counter()
            res = run_split(data, seed, args)
            results.setdefault(bench, []).append(res)
            log.info(
                "%s seed %d: %s (%.0fs)",
                bench,
                seed,
                {m: round(res[m], 2) for m in ("linear", *args.methods)},
                time.perf_counter() - t,
            )
    cols = ("linear", *args.methods)
    print(
        f"{'benchmark':<11}" + "".join(f"{c[:17]:>18}" for c in cols) + f"{'CR - best other':>17}"
    )
    gaps = []
    for bench, runs in results.items():
        means = {c: float(np.mean([r[c] for r in runs])) for c in cols}
        line = f"{bench:<11}" + "".join(f"{means[c]:18.2f}" for c in cols)
        if "cascade_routing" in means:
            gap = means["cascade_routing"] - max(
                v for c, v in means.items() if c != "cascade_routing"
            )
            gaps.append(gap)
            line += f"{gap:17.2f}"
        print(line)
    if gaps:
        print(
            f"mean CR - best other: {np.mean(gaps):.2f} over {len(gaps)} benchmarks, "
            f"{len(seeds)} split(s) each"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
