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
from cascade_routing.experiments.tables import SCALE_GRID, with_reference_variance_quirk

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


def test_reproduce_with_a_fitted_uncertainty_scale(capsys) -> None:
    argv = ["reproduce", "--pools", "3", "--noise", "medium", "--no-progress"]
    assert main([*argv, "--bootstrap", "0", "--uncertainty-scale", "fit"]) == 0
    text = capsys.readouterr().out
    line = next(x for x in text.splitlines() if x.startswith("ex-ante variances scaled by"))
    scale = float(line.split("3M")[1].split(",")[0])
    assert scale in SCALE_GRID
    # The same scale given as a number gives the same table.
    assert main([*argv, "--bootstrap", "0", "--uncertainty-scale", str(scale)]) == 0
    assert capsys.readouterr().out.split("total:")[0] == text.split("total:")[0]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["evaluate", "no-such-dataset"], "neither a bundled dataset"),
        (["evaluate", "--strategies", "routing,magic"], "unknown strategies"),
        (["evaluate", "--pool", "7"], "pools have"),
        (["reproduce", "--pools", "4"], "pools have"),
        (["reproduce", "--noise", "loud"], "unknown levels"),
        (["reproduce", "--uncertainty-scale", "big"], "'fit' or a number >= 0"),
        (["reproduce", "--uncertainty-scale", "-1"], "'fit' or a number >= 0"),
        (
            ["reproduce", "--uncertainty-scale", "fit", "--reference-variance-quirk"],
            "pass one of them",
        ),
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


# --------------------------------------------------------------------------- user mistakes


def _write_wide(folder: Path, models, quality, cost, encoding="utf-8", sample="s") -> Path:
    """A RouterBench-layout folder (quality.csv + cost_usd.csv) from (n, k) tables."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in (("quality.csv", quality), ("cost_usd.csv", cost)):
        lines = ["rb_row,sample_id,eval_name," + ",".join(models)]
        lines += [
            f"{i},{sample}.{i},arc," + ",".join(repr(float(v)) for v in row)
            for i, row in enumerate(table)
        ]
        (folder / name).write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return folder


def _tables(n: int, k: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    quality = rng.integers(0, 2, (n, k))
    cost = rng.uniform(0.1, 1.0, (n, k)) * np.arange(1, k + 1)
    return quality, cost


def _mistake(case: str, tmp_path: Path) -> tuple[list[str], str]:
    """The arguments of one user mistake and the text its message must name."""
    if case == "equal costs":
        quality, _ = _tables(40, 2)
        folder = _write_wide(tmp_path / "equal", ["a", "b"], quality, np.full((40, 2), 0.5))
        return ["evaluate", str(folder)], "same mean test cost"
    if case == "single model":
        quality, cost = _tables(40, 1)
        folder = _write_wide(tmp_path / "single", ["a"], quality, cost)
        return ["evaluate", str(folder)], "at least 2"
    if case == "max depth 0":
        return ["evaluate", "--max-depth", "0"], "--max-depth"
    if case == "65-model pool":
        models = [f"m{j}" for j in range(65)]
        folder = _write_wide(tmp_path / "wide", models, *_tables(20, 65))
        return ["evaluate", str(folder), "--pool", ",".join(models)], "--pool"
    if case == "64-model pool, deep":
        models = [f"m{j}" for j in range(64)]
        folder = _write_wide(tmp_path / "wide64", models, *_tables(20, 64))
        return ["evaluate", str(folder), "--pool", ",".join(models)], "--max-depth 4 or less"
    if case == "latin-1 csv":
        folder = _write_wide(tmp_path / "latin", ["a", "b"], *_tables(20, 2), "latin-1", "café")
        return ["evaluate", str(folder)], str(folder / "quality.csv")
    if case == "missing file":
        folder = _write_wide(tmp_path / "partial", ["a", "b"], *_tables(20, 2))
        (folder / "cost_usd.csv").unlink()
        return ["evaluate", str(folder)], str(folder / "cost_usd.csv")
    if case == "missing folder":
        return ["evaluate", str(tmp_path / "nowhere")], str(tmp_path / "nowhere")
    if case == "bootstrap 1":
        return ["evaluate", "--bootstrap", "1"], "--bootstrap"
    if case == "negative threads":
        return ["reproduce", "--threads", "-1"], "--threads"
    if case == "test size 1":
        return ["evaluate", "--split", "random", "--test-size", "1"], "--test-size"
    raise AssertionError(case)


MISTAKES = [
    "equal costs",
    "single model",
    "max depth 0",
    "65-model pool",
    "64-model pool, deep",
    "latin-1 csv",
    "missing file",
    "missing folder",
    "bootstrap 1",
    "negative threads",
    "test size 1",
]


@pytest.mark.parametrize("case", MISTAKES)
def test_user_mistakes_give_one_line_naming_the_flag_or_file(case, tmp_path, capsys) -> None:
    argv, named = _mistake(case, tmp_path)
    code = main([*argv, "--out", str(tmp_path / "out"), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 2, captured.err
    err = captured.err.strip()
    assert "\n" not in err, err
    assert err.startswith("cascade-routing") and "error:" in err
    assert named in err
    assert "Traceback" not in err and captured.out == ""


@pytest.mark.parametrize("case", ["max depth 0", "latin-1 csv", "65-model pool"])
def test_user_mistakes_exit_2_from_the_installed_entry_point(case, tmp_path) -> None:
    argv, named = _mistake(case, tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "cascade_routing", *argv, "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and named in result.stderr
    assert "Traceback" not in result.stderr


def test_help_and_version_exit_0(capsys) -> None:
    assert main(["--version"]) == 0
    assert "cascade-routing" in capsys.readouterr().out
    assert main(["evaluate", "--help"]) == 0
    assert "--bootstrap" in capsys.readouterr().out


def test_bootstrap_0_switches_the_intervals_off(tmp_path, capsys) -> None:
    common = ["evaluate", "--strategies", "routing", "--pool", "3", "--no-progress"]
    assert main([*common, "--bootstrap", "0", "--out", str(tmp_path / "a")]) == 0
    text = capsys.readouterr().out
    assert "bootstrap CI" not in text and "[" not in text
    data = json.loads((tmp_path / "a" / "routerbench.json").read_text())
    assert data["strategies"]["routing"]["ci"] is None and data["settings"]["n_boot"] == 0
    assert main([*common, "--bootstrap", "20", "--out", str(tmp_path / "b")]) == 0
    with_ci = json.loads((tmp_path / "b" / "routerbench.json").read_text())
    low, high = with_ci["strategies"]["routing"]["ci"]
    # The point estimate does not depend on the bootstrap.
    assert data["strategies"]["routing"]["auc"] == with_ci["strategies"]["routing"]["auc"]
    assert low <= with_ci["strategies"]["routing"]["auc"] <= high


def test_progress_is_shown_when_asked_and_not_off_a_terminal(tmp_path, capsys) -> None:
    folder = _write_wide(tmp_path / "rb", ["a", "b"], *_tables(200, 2))
    argv = ["evaluate", str(folder), "--strategies", "routing", "--bootstrap", "0"]
    assert main([*argv, "--out", str(tmp_path / "o1")]) == 0  # stderr is not a terminal here
    assert "reading quality.csv" not in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "o2"), "--progress"]) == 0
    err = capsys.readouterr().err
    assert "reading quality.csv" in err and "reading cost_usd.csv" in err and "fitting" in err
