"""`cascade-routing evaluate --estimators learned` and the learned evaluation behind it.

The data is a small synthetic folder in the llm_cascades layout (outcomes, prompts and answers
of four models on a few hundred queries, seeded), written to a temporary folder, so the
command line runs end to end in seconds.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from cascade_routing.cli import main
from cascade_routing.experiments import datasets
from cascade_routing.experiments.learned_evaluation import (
    LearnedRowQuality,
    evaluate_learned,
    learned_inputs,
)
from cascade_routing.learn import LearnedQuality

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MODELS = ("small", "medium", "large")
TOPICS = ("algebra", "history", "biology")
SKILL = np.array([[-0.6, 0.6, -1.0], [0.4, 1.1, 0.3], [1.5, 1.7, 1.6]])
PRICE = np.array([1.0, 4.0, 16.0]) * 1e-7
#: Small, fast settings of the estimator for the end-to-end runs.
FAST = ["--bootstrap", "50", "--no-progress"]


def write_folder(root: Path, n: int = 120, seed: int = 0) -> Path:
    """A benchmark ``quiz`` in the llm_cascades layout with answers whose agreement and
    log-probability confidence track correctness."""
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, len(TOPICS), n)
    logit = SKILL[:, topic].T - 1.2 * rng.standard_normal(n)[:, None]
    correct = (rng.random((n, len(MODELS))) < 1 / (1 + np.exp(-logit))).astype(int)
    signal = 1.5 * (2 * correct - 1) + 0.5 * logit + rng.normal(0.0, 1.0, correct.shape)
    confidence = -np.log1p(np.exp(-signal))
    tokens = rng.integers(40, 200, n)
    out, ans, prm = [], [], []
    for i in range(n):
        words = " ".join(f"w{int(w)}" for w in rng.integers(0, 40, 5))
        prm.append(("test", i, "Answer with a letter.", f"{TOPICS[topic[i]]} question {words}"))
        for j, m in enumerate(MODELS):
            letter = "A" if correct[i, j] else "BCD"[int(rng.integers(0, 3))]
            cost = PRICE[j] * (tokens[i] + 1)
            out.append(("test", i, m, correct[i, j], confidence[i, j], cost, tokens[i]))
            ans.append(("test", i, m, letter))
    root.mkdir(parents=True, exist_ok=True)
    cols = ["split", "qid", "model", "correct", "raw_confidence", "cost_usd", "tokens_in"]
    pd.DataFrame(out, columns=cols).to_csv(root / "outcomes_quiz.csv", index=False)
    pd.DataFrame(ans, columns=["split", "qid", "model", "answer"]).to_csv(
        root / "answers_quiz.csv", index=False
    )
    pd.DataFrame(prm, columns=["split", "qid", "system_prompt", "user_prompt"]).to_csv(
        root / "prompts_quiz.csv", index=False
    )
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_folder(tmp_path_factory.mktemp("quiz"))


def run(argv: list[str], capsys: Any) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def auc_rows(text: str) -> dict[str, str]:
    """The lines of the AUC table, by method label."""
    rows = {}
    for label in ("linear", "routing", "cascade routing", "CR - best other"):
        match = re.search(rf"^{label}\s+(.*)$", text, re.MULTILINE)
        assert match, f"no row {label!r} in:\n{text}"
        rows[label] = match.group(1)
    return rows


def test_cli_learned_three_seeds_writes_table_json_and_calibration_png(
    folder: Path, tmp_path: Path, capsys: Any
) -> None:
    plot = tmp_path / "calibration.png"
    target = tmp_path / "points.json"
    argv = ["evaluate", str(folder), "--benchmarks", "quiz", "--estimators", "learned"]
    argv += ["--seeds", "0,1,2", "--out", str(tmp_path), "--json", str(target)]
    argv += ["--strategies", "routing,cascade_routing"]  # the two of CR - best other: quick
    code, text, err = run([*argv, "--plot", str(plot), *FAST], capsys)
    assert code == 0, err
    assert "learned estimators reading query texts, confidences, agreement" in text
    assert "60 train / 60 test queries per split" in text
    rows = auc_rows(text)
    data = json.loads(target.read_text())
    summary = data["summary"]
    assert summary["seeds"] == [0, 1, 2] and len(data["splits"]) == 3
    for key, label in [
        ("linear", "linear"),
        ("routing", "routing"),
        ("cascade_routing", "cascade routing"),
    ]:
        each = summary["per_split"][key]
        # The mean printed is the mean of the three splits' AUCs, each from its own split.
        assert summary["auc"][key] == pytest.approx(np.mean(each))
        for split, value in zip(data["splits"], each):
            expected = split["linear_auc"] if key == "linear" else split["strategies"][key]["auc"]
            assert value == expected
        low, high = summary["ci"][key]
        assert low <= summary["auc"][key] <= high
        assert rows[label].split()[0] == f"{100 * summary['auc'][key]:.2f}"
    best = summary["best_other"]
    assert best != "cascade_routing"
    others = [k for k in summary["auc"] if k != "cascade_routing"]
    assert summary["auc"][best] == max(summary["auc"][k] for k in others)
    gap = summary["auc"]["cascade_routing"] - summary["auc"][best]
    assert summary["cr_minus_best_other"] == pytest.approx(gap)
    assert rows["CR - best other"].split()[0] == f"{100 * gap:+.2f}"
    # The three splits are different random splits.
    assert len({json.dumps(s["single_models"]) for s in data["splits"]}) == 3
    for split in data["splits"]:
        assert set(split["calibration"]) == set(MODELS)
        assert split["settings"]["estimators"] == "learned"
        assert split["settings"]["cost_model"] == "cost per prompt character"
    assert plot.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(plot)
    assert image.ndim == 3 and image.shape[0] > 200 and image.std() > 0
    assert (tmp_path / "llm_cascades_quiz.png").read_bytes()[:8] == PNG_SIGNATURE


def test_same_seed_gives_the_same_table(folder: Path, tmp_path: Path, capsys: Any) -> None:
    argv = ["evaluate", str(folder), "--benchmarks", "quiz", "--estimators", "learned"]
    argv += ["--strategies", "routing,cascade_routing", *FAST]
    first = run([*argv, "--seeds", "3", "--out", str(tmp_path / "a")], capsys)
    second = run([*argv, "--seeds", "3", "--out", str(tmp_path / "b")], capsys)
    assert first[0] == second[0] == 0
    assert auc_rows_subset(first[1]) == auc_rows_subset(second[1])
    a = json.loads((tmp_path / "a" / "llm_cascades_quiz.json").read_text())
    b = json.loads((tmp_path / "b" / "llm_cascades_quiz.json").read_text())
    for split_a, split_b in zip(a["splits"], b["splits"]):
        for key in ("routing", "cascade_routing"):
            pa, pb = split_a["strategies"][key]["points"], split_b["strategies"][key]["points"]
            assert pa == pb


def auc_rows_subset(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(("linear", "routing", "casc"))]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--plot", "x.png"], "--plot draws the calibration of the learned estimators"),
        (["--estimators", "learned", "--noise", "low"], "--noise sets the simulated"),
        (["--seed", "1", "--seeds", "0,1"], "--seed and --seeds: give one"),
        (["--seeds", "0,0"], "repeats a seed"),
        (["--seeds", "a"], "takes seeds like 0,1,2"),
        (["--estimators", "learned", "--seeds", "0,1", "--split", "source"], "one split"),
        (["--estimators", "tuned"], "invalid choice: 'tuned'"),
    ],
)
def test_bad_flag_combinations_are_one_clear_line(
    folder: Path, tmp_path: Path, capsys: Any, extra: list[str], message: str
) -> None:
    argv = ["evaluate", str(folder), "--benchmarks", "quiz", "--out", str(tmp_path)]
    code, _, err = run([*argv, *extra, "--no-progress"], capsys)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_data_without_per_answer_signal_names_what_is_missing(tmp_path, capsys) -> None:
    # The bundled RouterBench rows have quality and cost only: no prompts, no responses.
    code, _, err = run(["evaluate", "routerbench", "--estimators", "learned", *FAST], capsys)
    assert code == 2
    for missing in ("no confidences", "no per-answer scores", "no answer texts"):
        assert missing in err
    assert "--estimators tables" in err


def test_bundled_mmlu_slice_reads_confidences_and_names_what_it_lacks() -> None:
    data = datasets.load("llm_cascades_mmlu")
    inputs = learned_inputs(data)
    assert inputs.reads == ("prompt lengths", "confidences")
    assert "query texts" in inputs.lacks and "answers to compare" in inputs.lacks
    assert inputs.queries[0]["features"]["log_prompt_chars"] == pytest.approx(
        np.log1p(data.features["prompt_chars"][0])
    )
    assert inputs.answers[3][2].confidence == data.confidence[3, 2]
    assert inputs.answers[3][2].cost == data.cost[3, 2]


def test_loader_exposes_texts_answers_and_tokens(folder: Path) -> None:
    data = datasets.load(folder, benchmarks=["quiz"])
    frame = pd.read_csv(folder / "answers_quiz.csv")
    prompts = pd.read_csv(folder / "prompts_quiz.csv")
    row = data.models.index("medium")
    assert data.texts is not None and data.answer_texts is not None
    assert data.texts[5] == prompts["system_prompt"][5] + "\n" + prompts["user_prompt"][5]
    given = frame[(frame.qid == 5) & (frame.model == "medium")]["answer"].item()
    assert data.answer_texts[5, row] == given
    assert data.parsed_answers is not None and data.parsed_answers[5, row] == given.lower()
    assert data.input_tokens is not None
    subset = data.subset([5, 7]).select_models(["large", "medium"])
    assert subset.answer_texts is not None and subset.answer_texts[0, 1] == given
    assert subset.texts is not None and subset.texts[0] == data.texts[5]


def test_test_outcomes_do_not_reach_the_test_estimates(folder: Path) -> None:
    """Permuting the test rows' outcomes leaves every estimate the strategies see unchanged,
    train rows (cross-fitted) and test rows alike, and so the replayed per-query costs."""
    data = datasets.load(folder, benchmarks=["quiz"])
    rng = np.random.default_rng(0)
    perm = rng.permutation(data.n_queries)
    train, test = np.sort(perm[:60]), np.sort(perm[60:])
    shuffled_quality = data.quality.copy()
    shuffled_quality[test] = shuffled_quality[test][rng.permutation(test.size)]
    shuffled = dataclasses.replace(data, quality=shuffled_quality)
    outs = []
    for d in (data, shuffled):
        inputs = learned_inputs(d)
        est = LearnedQuality(d.models, seed=0).fit(
            [inputs.queries[r] for r in train],
            [inputs.answers[r] for r in train],
            d.quality[train],
        )
        rows = LearnedRowQuality(est, inputs.queries, train)
        partial = [[a if j < 2 else None for j, a in enumerate(inputs.answers[r])] for r in perm]
        outs.append(rows.predict(perm.tolist(), partial).mean)
        split = evaluate_learned(
            d, train, test, strategies=["cascade_routing"], n_boot=0, per_segment=2
        )
        outs.append(split.evaluation.curves["cascade_routing"].per_query_cost)
    np.testing.assert_array_equal(outs[0], outs[2])
    np.testing.assert_array_equal(outs[1], outs[3])


def test_estimates_are_predicted_once_per_row_and_run_set(folder: Path) -> None:
    data = datasets.load(folder, benchmarks=["quiz"])
    inputs = learned_inputs(data)
    train = np.arange(0, 120, 2)
    est = LearnedQuality(data.models, seed=0).fit(
        [inputs.queries[r] for r in train], [inputs.answers[r] for r in train], data.quality[train]
    )
    rows = LearnedRowQuality(est, inputs.queries, train)
    queries = [0, 1, 2, 3]  # two training rows (cross-fitted), two test rows
    first = [[a if j == 0 else None for j, a in enumerate(inputs.answers[r])] for r in queries]
    out = rows.predict(queries, first)
    assert rows.calls == 2  # one call for the training rows, one for the others
    again = rows.predict(queries[::-1], first[::-1])
    assert rows.calls == 2
    np.testing.assert_array_equal(again.mean, out.mean[::-1])
    # The test rows are the fitted estimator's, the training rows the out-of-fold ones.
    direct = est.predict([inputs.queries[1], inputs.queries[3]], [first[1], first[3]])
    np.testing.assert_array_equal(out.mean[[1, 3]], direct.mean)
    cross = est.cross_fitted().predict([0, 1], [first[0], first[2]])
    np.testing.assert_array_equal(out.mean[[0, 2]], cross.mean)


def test_routerbench_prompts_and_response_lengths_follow_the_rows(tmp_path: Path) -> None:
    keys = {"rb_row": [7, 8, 9], "sample_id": ["a.0", "a.1", "b.0"], "eval_name": ["a", "a", "b"]}
    pd.DataFrame({**keys, "m1": [1, 0, 1], "m2": [0, 1, 1]}).to_csv(
        tmp_path / "quality.csv", index=False
    )
    pd.DataFrame({**keys, "m1": [0.1, 0.2, 0.3], "m2": [1.0, 2.0, 3.0]}).to_csv(
        tmp_path / "cost_usd.csv", index=False
    )
    # Rows in another order than quality.csv: the loader aligns them on rb_row.
    pd.DataFrame(
        {"rb_row": [9, 7, 8], "sample_id": ["b.0", "a.0", "a.1"], "eval_name": ["b", "a", "a"]}
        | {"m1": [30, 10, 20], "m2": [300, 100, 200]}
    ).to_csv(tmp_path / "response_chars.csv", index=False)
    pd.DataFrame(
        {"rb_row": [8, 7], "prompt": ["['second', 'part']", "plain first"]}
        | {"sample_id": ["a.1", "a.0"], "eval_name": ["a", "a"]}
    ).to_csv(tmp_path / "prompts_a.csv", index=False)
    pd.DataFrame(
        {"rb_row": [9], "prompt": ["['third']"], "sample_id": ["b.0"], "eval_name": ["b"]}
    ).to_csv(tmp_path / "prompts_b.csv", index=False)
    data = datasets.load(tmp_path)
    assert data.texts is not None and data.texts.tolist() == [
        "plain first",
        "second\npart",
        "third",
    ]
    assert data.answer_scores is not None
    np.testing.assert_array_equal(data.answer_scores, [[10, 100], [20, 200], [30, 300]])
    inputs = learned_inputs(data)
    assert inputs.reads == ("query texts", "groups", "response length (characters)")
    assert inputs.answers[1][1].confidence == 200 and inputs.answers[1][1].cost == 2.0
    assert inputs.queries[2] == {"text": "third", "group": "b"}


def test_swebench_api_calls_follow_the_instances(tmp_path: Path) -> None:
    keys = {"instance_id": ["x-1", "y-2"], "repo": ["x", "y"]}
    pd.DataFrame({**keys, "k1": [1, 0], "k2": [0, 1]}).to_csv(
        tmp_path / "resolved.csv", index=False
    )
    pd.DataFrame({**keys, "k1": [0.5, 0.7], "k2": [0.1, 0.2]}).to_csv(
        tmp_path / "cost_usd.csv", index=False
    )
    pd.DataFrame(
        {"instance_id": ["y-2", "x-1"], "repo": ["y", "x"], "k1": [40, 12], "k2": [9, 31]}
    ).to_csv(tmp_path / "api_calls.csv", index=False)
    data = datasets.load(tmp_path)
    assert data.texts is None and data.answer_score_name == "API calls of the agent run"
    np.testing.assert_array_equal(data.answer_scores, [[12, 31], [40, 9]])
    inputs = learned_inputs(data)
    assert "query texts" in inputs.lacks and inputs.queries[1] == {"text": "", "group": "y"}


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("texts", ["one"], "texts must be 2 strings"),
        ("answer_texts", [["a", "b"]], "answer_texts must be strings of shape"),
        ("answer_scores", [[1.0, 2.0], [3.0, np.nan]], "answer_scores"),
        ("input_tokens", [[1.0, -2.0], [3.0, 4.0]], "input_tokens must be >= 0"),
        ("prices", {"a": (1.0, 1.0)}, "prices lacks models \\['b'\\]"),
    ],
)
def test_dataset_refuses_bad_learned_fields(field: str, value: Any, message: str) -> None:
    base = {"name": "t", "models": ("a", "b"), "quality": [[1, 0], [0, 1]]}
    base["cost"] = [[1.0, 2.0], [1.0, 2.0]]
    extra = {"answer_score_name": "s"} if field == "answer_scores" else {}
    with pytest.raises(ValueError, match=message):
        datasets.Dataset(**base, **{field: value}, **extra)
    if field == "answer_scores":
        with pytest.raises(ValueError, match="answer_score_name"):
            datasets.Dataset(**base, answer_scores=[[1.0, 2.0], [3.0, 4.0]])


def test_tables_with_seeds_average_the_single_seed_runs(
    folder: Path, tmp_path: Path, capsys: Any
) -> None:
    common = ["evaluate", str(folder), "--benchmarks", "quiz"]
    common += ["--strategies", "routing,cascade_routing"]
    singles = []
    for seed in (0, 1):
        target = tmp_path / f"seed{seed}.json"
        argv = [*common, "--split", "random", "--seed", str(seed), "--bootstrap", "0"]
        code, _, err = run([*argv, "--out", str(tmp_path), "--json", str(target)], capsys)
        assert code == 0, err
        singles.append(json.loads(target.read_text()))
    target = tmp_path / "seeds.json"
    argv = [*common, "--seeds", "0,1", *FAST, "--out", str(tmp_path), "--json", str(target)]
    code, text, err = run(argv, capsys)
    assert code == 0, err
    data = json.loads(target.read_text())
    for key in ("routing", "cascade_routing"):
        each = [s["strategies"][key]["auc"] for s in singles]
        assert data["summary"]["per_split"][key] == each
        assert data["summary"]["auc"][key] == pytest.approx(np.mean(each))
    assert "mean AUC x100 over 2 split(s) (seeds 0,1)" in text
    assert "calibration" not in text  # the tables have no calibration report
