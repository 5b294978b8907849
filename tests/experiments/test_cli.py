"""The command line end to end on the bundled data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from cascade_routing.cli import main
from cascade_routing.experiments import datasets, simulation
from cascade_routing.experiments.evaluation import STRATEGY_LABELS, evaluate
from cascade_routing.experiments.metrics import auc_from_queries
from cascade_routing.experiments.published import PAPER_AUC, REFERENCE_SUBSET_AUC
from cascade_routing.experiments.settings import PAPER_POOLS
from cascade_routing.experiments.tables import with_reference_variance_quirk

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 0  # not a blank canvas


def test_evaluate_default_dataset(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    code = main(["evaluate", "--out", str(out), "--bootstrap", "100", "--no-progress"])
    assert code == 0
    text = capsys.readouterr().out
    for label in ("linear", *STRATEGY_LABELS.values()):
        assert label in text
    assert "157 train / 2993 test" in text
    check_png(out / "routerbench.png")
    data = json.loads((out / "routerbench.json").read_text())
    assert set(data["strategies"]) == set(STRATEGY_LABELS)
    for curve in data["strategies"].values():
        low, high = curve["ci"]
        assert low <= curve["auc"] <= high
        assert len(curve["points"]) == len(data["settings"]["budgets"])
    # The table prints the same AUCs the JSON holds.
    routing = 100 * data["strategies"]["routing"]["auc"]
    assert f"{routing:.2f}" in text


def test_evaluate_confidence_dataset_with_json_path(tmp_path, capsys) -> None:
    target = tmp_path / "points.json"
    code = main(
        [
            "evaluate",
            "llm_cascades_mmlu",
            "--out",
            str(tmp_path),
            "--json",
            str(target),
            "--strategies",
            "routing,cascade_routing",
            "--bootstrap",
            "50",
            "--no-progress",
        ]
    )
    assert code == 0
    assert "confidence-based estimators" in capsys.readouterr().out
    data = json.loads(target.read_text())
    assert set(data["strategies"]) == {"routing", "cascade_routing"}
    assert data["n_train"] == 285 and data["n_test"] == 1531
    check_png(tmp_path / "llm_cascades_mmlu.png")


def test_reproduce_prints_the_paper_table(tmp_path, capsys) -> None:
    code = main(
        [
            "reproduce",
            "--pools",
            "3",
            "--noise",
            "low",
            "--json",
            str(tmp_path / "r.json"),
            "--no-progress",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "3L" in text and "paper" in text and "subset" in text
    assert f"{PAPER_AUC['cascade routing']['3L']:5.1f}" in text
    assert json.loads((tmp_path / "r.json").read_text())["3L"]["n_test"] == 2993


@pytest.mark.parametrize(
    "argv, message",
    [
        (["evaluate", "no-such-dataset"], "neither a bundled dataset"),
        (["evaluate", "--strategies", "routing,magic"], "unknown strategies"),
        (["evaluate", "--pool", "7"], "pools have"),
        (["reproduce", "--pools", "4"], "pools have"),
        (["reproduce", "--noise", "loud"], "unknown levels"),
        (["evaluate", "--benchmarks", "all"], "llm_cascades data only"),
        (["evaluate", "--quality-bounds", "1,0"], "lower bound must be below"),
    ],
)
def test_usage_errors_are_one_clear_line(argv, message, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_module_entry_point_runs(tmp_path) -> None:
    env = dict(os.environ)
    result = subprocess.run(
        [sys.executable, "-m", "cascade_routing", "datasets"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "routerbench" in result.stdout and "licence" in result.stdout.lower()


def test_evaluation_curves_match_the_per_query_outcomes() -> None:
    data = datasets.load("routerbench")
    run = simulation.routerbench_run(data, PAPER_POOLS[3], "low")
    ev = evaluate(
        run.dataset,
        run.estimates,
        run.train_rows,
        run.test_rows,
        n_boot=20,
        strategies=["routing"],
    )
    curve = ev.curves["routing"]
    np.testing.assert_allclose(curve.cost, curve.per_query_cost.mean(axis=1))
    test = run.dataset.subset(run.test_rows)
    order = np.argsort(run.dataset.cost[run.train_rows].mean(axis=0), kind="stable")
    expected = auc_from_queries(
        curve.per_query_cost, curve.per_query_quality, test.cost[:, order], test.quality[:, order]
    )
    assert curve.auc == pytest.approx(expected, abs=1e-12)
    assert all(
        s in ("ok", "budget_below_cheapest", "budget_above_dearest") for s in curve.statuses
    )


@pytest.mark.parametrize("column", ["3M", "5H"])
def test_reference_implementation_numbers_are_matched(column) -> None:
    """With the reference's variance quirk, the AUCs the reference code measured on this
    subset (docs/algorithm.md §14, an independent implementation) are reproduced within 0.1."""
    data = datasets.load("routerbench")
    size, noise = int(column[0]), {"L": "low", "M": "medium", "H": "high"}[column[1]]
    run = simulation.routerbench_run(data, PAPER_POOLS[size], noise)
    tables = with_reference_variance_quirk(run.estimates)
    ev = evaluate(run.dataset, tables, run.train_rows, run.test_rows, n_boot=2)
    assert 100 * ev.linear_auc == pytest.approx(REFERENCE_SUBSET_AUC["linear"][column], abs=0.01)
    for key, label in STRATEGY_LABELS.items():
        ours = 100 * ev.curves[key].auc
        assert ours == pytest.approx(REFERENCE_SUBSET_AUC[label][column], abs=0.1), key


def test_evaluate_random_split_and_split_errors(tmp_path, capsys) -> None:
    code = main(
        [
            "evaluate",
            "llm_cascades_mmlu",
            "--split",
            "random",
            "--test-size",
            "0.5",
            "--out",
            str(tmp_path),
            "--strategies",
            "routing",
            "--bootstrap",
            "20",
            "--no-progress",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "random split" in text and "908 train / 908 test" in text
    folder = tmp_path / "swe"
    folder.mkdir()
    rng = np.random.default_rng(0)
    ids = [f"org__repo{i % 3}-{i}" for i in range(40)]
    for name, values in (
        ("resolved.csv", rng.integers(0, 2, (40, 2))),
        ("cost_usd.csv", rng.uniform(0.1, 1, (40, 2))),
    ):
        lines = ["instance_id,repo,model_a,model_b"]
        lines += [
            f"{i},org/repo{n % 3},{v[0]},{v[1]}" for n, (i, v) in enumerate(zip(ids, values))
        ]
        (folder / name).write_text("\n".join(lines) + "\n")
    assert main(["evaluate", str(folder), "--split", "source", "--out", str(tmp_path)]) == 2
    assert "no split of its own" in capsys.readouterr().err
    assert (
        main(
            ["evaluate", str(folder), "--bootstrap", "20", "--out", str(tmp_path), "--no-progress"]
        )
        == 0
    )
    assert "20 train / 20 test" in capsys.readouterr().out
