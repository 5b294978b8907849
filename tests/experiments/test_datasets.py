"""Dataset container and loaders: errors, missing values, the real shared data, bundled data."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

import cascade_routing
from cascade_routing.experiments.datasets import (
    Dataset,
    bundled_datasets,
    bundled_readme,
    detect_layout,
    load,
    load_llm_cascades,
    load_mmlu_pro,
    load_routerbench,
    load_swebench,
)

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def shared(folder: str) -> Path:
    path = SHARED / folder
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} is not present (it sits beside the repository)")
    return path


# --------------------------------------------------------------------------- tiny CSV folders


def write_routerbench(
    folder: Path,
    quality: list[list[float]],
    cost: list[list[float]],
    models=("m_a", "m_b"),
    extra=None,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    n = len(quality)
    keys = {
        "rb_row": np.arange(100, 100 + n),
        "sample_id": [f"arc.{i}" for i in range(n)],
        "eval_name": ["arc" if i % 2 else "mbpp" for i in range(n)],
    }
    q = pd.DataFrame({**keys, **{m: [row[j] for row in quality] for j, m in enumerate(models)}})
    c = pd.DataFrame({**keys, **{m: [row[j] for row in cost] for j, m in enumerate(models)}})
    if extra is not None:
        q, c = extra(q, c)
    q.to_csv(folder / "quality.csv", index=False)
    c.to_csv(folder / "cost_usd.csv", index=False)
    return folder


GOOD_Q = [[1, 0], [0, 1], [1, 1], [0, 0]]
GOOD_C = [[0.1, 0.5], [0.2, 0.4], [0.1, 0.6], [0.3, 0.3]]


def test_routerbench_tiny_folder_loads(tmp_path):
    ds = load_routerbench(write_routerbench(tmp_path / "rb", GOOD_Q, GOOD_C))
    assert ds.models == ("m_a", "m_b")
    np.testing.assert_array_equal(ds.quality, np.array(GOOD_Q, dtype=float))
    np.testing.assert_array_equal(ds.cost, np.array(GOOD_C))
    assert ds.query_ids.tolist() == [100, 101, 102, 103]
    assert ds.groups.tolist() == ["mbpp", "arc", "mbpp", "arc"]
    assert ds.n_dropped == 0 and not ds.cost_is_estimate
    assert ds.n_queries == 4 and ds.n_models == 2 and ds.confidence is None


def test_missing_folder_and_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_routerbench(tmp_path / "nowhere")
    folder = write_routerbench(tmp_path / "rb", GOOD_Q, GOOD_C)
    (folder / "cost_usd.csv").unlink()
    with pytest.raises(FileNotFoundError, match="cost_usd.csv"):
        load_routerbench(folder)


def test_wrong_columns_are_named(tmp_path):
    folder = write_routerbench(
        tmp_path / "rb",
        GOOD_Q,
        GOOD_C,
        extra=lambda q, c: (q.rename(columns={"rb_row": "row"}), c),
    )
    with pytest.raises(ValueError, match="rb_row"):
        load_routerbench(folder)
    folder = write_routerbench(
        tmp_path / "rb2", GOOD_Q, GOOD_C, extra=lambda q, c: (q, c.rename(columns={"m_b": "m_z"}))
    )
    with pytest.raises(ValueError, match="m_b|m_z"):
        load_routerbench(folder)


def test_nan_rows_are_dropped_and_counted(tmp_path, caplog):
    q = [[1, np.nan], [0, 1], [1, 1], [0, 0]]
    c = [[0.1, 0.5], [0.2, 0.4], [np.nan, 0.6], [0.3, 0.3]]
    folder = write_routerbench(tmp_path / "rb", q, c)
    with caplog.at_level(logging.INFO, logger="cascade_routing.experiments.datasets"):
        ds = load_routerbench(folder)
    assert ds.n_dropped == 2
    assert ds.query_ids.tolist() == [101, 103]
    assert not np.isnan(ds.quality).any() and not np.isnan(ds.cost).any()
    assert any("dropped 2" in r.getMessage() for r in caplog.records)
    # a missing value only counts for the selected models
    only_b = load_routerbench(folder, models=["m_b"])
    assert only_b.n_dropped == 1 and only_b.query_ids.tolist() == [101, 102, 103]


def test_out_of_range_values_are_rejected(tmp_path):
    folder = write_routerbench(tmp_path / "q", [[1, 2], [0, 1]], [[0.1, 0.1], [0.1, 0.1]])
    with pytest.raises(ValueError, match=r"\[0, 1\].*m_b"):
        load_routerbench(folder)
    folder = write_routerbench(tmp_path / "c", [[1, 0], [0, 1]], [[0.1, -0.1], [0.1, 0.1]])
    with pytest.raises(ValueError, match="non-negative.*m_b"):
        load_routerbench(folder)
    folder = write_routerbench(
        tmp_path / "s",
        [[1, 0], [0, 1]],
        [[0.1, 0.1], [0.1, 0.1]],
        extra=lambda q, c: (q.assign(m_a=["yes", "no"]), c),
    )
    with pytest.raises(ValueError, match="numeric"):
        load_routerbench(folder)


def test_unknown_model_selection(tmp_path):
    folder = write_routerbench(tmp_path / "rb", GOOD_Q, GOOD_C)
    with pytest.raises(ValueError, match="m_x"):
        load_routerbench(folder, models=["m_x"])


def write_outcomes(folder: Path, bench: str, rows: list[tuple], prompts: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(
        rows, columns=["split", "qid", "model", "correct", "raw_confidence", "cost_usd"]
    )
    frame["tokens_in"] = 10
    frame.to_csv(folder / f"outcomes_{bench}.csv", index=False)
    if prompts:
        keys = frame[["split", "qid"]].drop_duplicates()
        pd.DataFrame(
            {
                "split": keys["split"],
                "qid": keys["qid"],
                "system_prompt": "ab",
                "user_prompt": ["x" * (3 + int(q)) for q in keys["qid"]],
            }
        ).to_csv(folder / f"prompts_{bench}.csv", index=False)


def test_llm_cascades_long_to_wide_keeps_minus_inf(tmp_path):
    rows = [
        ("train", 0, "small", 1, -0.1, 0.01),
        ("train", 0, "big", 1, -0.05, 0.1),
        ("train", 1, "small", 0, float("-inf"), 0.02),
        ("train", 1, "big", 1, -0.2, 0.2),
        ("test", 0, "small", 0, -2.0, 0.01),
        ("test", 0, "big", 1, -0.3, 0.1),
        ("test", 1, "small", 1, -0.5, 0.01),  # "big" has no record for test/1
    ]
    write_outcomes(tmp_path / "lc", "quiz", rows)
    ds = load_llm_cascades(tmp_path / "lc", benchmarks=["quiz"])
    assert ds.models == ("small", "big")
    assert ds.n_dropped == 1
    assert ds.query_ids.tolist() == ["quiz/train/0", "quiz/train/1", "quiz/test/0"]
    assert ds.confidence[1, 0] == -np.inf
    np.testing.assert_array_equal(ds.quality, [[1, 1], [0, 1], [0, 1]])
    np.testing.assert_array_equal(ds.cost, [[0.01, 0.1], [0.02, 0.2], [0.01, 0.1]])
    assert ds.features["source_split"].tolist() == ["train", "train", "test"]
    np.testing.assert_array_equal(ds.features["prompt_chars"], [5, 6, 5])
    assert ds.groups.tolist() == ["quiz"] * 3
    assert detect_layout(tmp_path / "lc") == "llm_cascades"


def test_llm_cascades_errors(tmp_path):
    rows = [("train", 0, "m", 1, -0.1, 0.01), ("train", 0, "m", 0, -0.2, 0.01)]
    write_outcomes(tmp_path / "dup", "b", rows)
    with pytest.raises(ValueError, match="duplicate"):
        load_llm_cascades(tmp_path / "dup", benchmarks=["b"])
    with pytest.raises(FileNotFoundError, match="outcomes_other.csv"):
        load_llm_cascades(tmp_path / "dup", benchmarks=["other"])
    (tmp_path / "cols").mkdir()
    pd.DataFrame({"split": ["train"], "qid": [0], "model": ["m"], "correct": [1]}).to_csv(
        tmp_path / "cols" / "outcomes_b.csv", index=False
    )
    with pytest.raises(ValueError, match="raw_confidence"):
        load_llm_cascades(tmp_path / "cols", benchmarks=["b"])


def test_swebench_and_mmlu_pro_tiny(tmp_path):
    sw = tmp_path / "sw"
    sw.mkdir()
    keys = {"instance_id": ["a__a-1", "b__b-2", "a__a-3"], "repo": ["a/a", "b/b", "a/a"]}
    pd.DataFrame({**keys, "k1": [1, 0, 1], "k2": [0, 0, 1]}).to_csv(
        sw / "resolved.csv", index=False
    )
    pd.DataFrame({**keys, "k1": [0.5, 0.7, 0.2], "k2": [0.1, 0.1, 0.2]}).to_csv(
        sw / "cost_usd.csv", index=False
    )
    pd.DataFrame({"model_key": ["k1", "k2"], "display_name": ["Model One", "Model Two"]}).to_csv(
        sw / "models.csv", index=False
    )
    ds = load(sw)
    assert ds.name == "swebench" and ds.models == ("Model One", "Model Two")
    assert ds.groups.tolist() == ["a/a", "b/b", "a/a"]
    np.testing.assert_array_equal(ds.quality[:, 0], [1, 0, 1])

    mp = tmp_path / "mp"
    mp.mkdir()
    pd.DataFrame(
        {
            "question_id": [70, 71, 72],
            "category": ["law", "math", "law"],
            "src": ["x", "y", "z"],
            "a": [1, 0, np.nan],
            "b": [0, 1, 1],
        }
    ).to_csv(mp / "correct.csv", index=False)
    pd.DataFrame(
        {"question_id": [70, 71, 72], "a": [1200, 30, np.nan], "b": [500, 800, 900]}
    ).to_csv(mp / "output_chars.csv", index=False)
    ds = load(mp)
    assert ds.cost_is_estimate and "ESTIMATE" in ds.source
    assert ds.n_dropped == 1
    np.testing.assert_allclose(ds.cost, [[1.2, 0.5], [0.03, 0.8]])
    priced = load_mmlu_pro(mp, models=["b"], price_per_kchar={"b": 2.0})
    assert priced.n_dropped == 0
    np.testing.assert_allclose(priced.cost[:, 0], [1.0, 1.6, 1.8])
    with pytest.raises(ValueError, match="price"):
        load_mmlu_pro(mp, price_per_kchar={"b": 2.0})


def test_load_dispatch_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="bundled"):
        load("no_such_dataset")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="layout"):
        load(tmp_path / "empty")


# --------------------------------------------------------------------------- the container


def _toy(n=20, k=3, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    return Dataset(
        name="toy",
        models=tuple(f"m{j}" for j in range(k)),
        quality=(rng.random((n, k)) < 0.6).astype(float),
        cost=rng.random((n, k)),
        confidence=np.log(rng.random((n, k))),
        groups=np.array(["g1", "g2"] * (n // 2)),
        query_ids=np.arange(1000, 1000 + n),
        features={"prompt_chars": rng.integers(10, 100, n).astype(float)},
    )


def test_split_is_seeded_and_matches_sklearn():
    ds = _toy()
    a_train, a_test = ds.split(test_size=0.25, seed=3)
    b_train, b_test = ds.split(test_size=0.25, seed=3)
    c_train, _ = ds.split(test_size=0.25, seed=4)
    np.testing.assert_array_equal(a_train.query_ids, b_train.query_ids)
    np.testing.assert_array_equal(a_test.query_ids, b_test.query_ids)
    assert not np.array_equal(a_train.query_ids, c_train.query_ids)
    assert a_train.n_queries == 15 and a_test.n_queries == 5
    assert sorted(a_train.query_ids.tolist() + a_test.query_ids.tolist()) == ds.query_ids.tolist()
    expected_train, _ = train_test_split(range(20), test_size=0.25, random_state=3)
    assert a_train.query_ids.tolist() == [1000 + i for i in expected_train]
    np.testing.assert_array_equal(
        a_train.features["prompt_chars"], ds.features["prompt_chars"][np.asarray(expected_train)]
    )


def test_subset_and_select_models():
    ds = _toy()
    sub = ds.subset([3, 1])
    np.testing.assert_array_equal(sub.quality, ds.quality[[3, 1]])
    np.testing.assert_array_equal(sub.groups, ds.groups[[3, 1]])
    masked = ds.subset(ds.groups == "g1")
    assert masked.n_queries == 10
    sel = ds.select_models(["m2", "m0"])
    assert sel.models == ("m2", "m0")
    np.testing.assert_array_equal(sel.cost, ds.cost[:, [2, 0]])
    np.testing.assert_array_equal(sel.confidence, ds.confidence[:, [2, 0]])
    with pytest.raises(KeyError, match="m9"):
        ds.select_models(["m9"])


def test_dataset_is_read_only_and_validated():
    ds = _toy()
    with pytest.raises(ValueError):
        ds.quality[0, 0] = 0.5
    with pytest.raises(AttributeError):
        ds.name = "other"  # type: ignore[misc]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Dataset("x", ("a",), quality=[[1.5]], cost=[[0.1]])
    with pytest.raises(ValueError, match="non-negative"):
        Dataset("x", ("a",), quality=[[1.0]], cost=[[-0.1]])
    with pytest.raises(ValueError, match="NaN"):
        Dataset("x", ("a",), quality=[[np.nan]], cost=[[0.1]])
    # -inf confidences are allowed and kept; NaN ones are not
    kept = Dataset("x", ("a",), quality=[[1.0]], cost=[[0.1]], confidence=[[-np.inf]])
    assert kept.confidence[0, 0] == -np.inf
    with pytest.raises(ValueError, match="NaN"):
        Dataset("x", ("a",), quality=[[1.0]], cost=[[0.1]], confidence=[[np.nan]])
    with pytest.raises(ValueError, match="unique"):
        Dataset("x", ("a",), quality=[[1.0], [0.0]], cost=[[0.1], [0.2]], query_ids=[1, 1])


# --------------------------------------------------------------------------- bundled data


def test_bundled_datasets_load_with_origin():
    assert set(bundled_datasets()) == {"routerbench", "llm_cascades_mmlu"}
    rb = load("routerbench")
    assert rb.n_queries + rb.n_dropped == 3178
    assert rb.n_models == 11
    assert "RouterDC" in rb.source and "licence" in rb.source.lower()
    assert "0e63989c5bf4363330b8a4616386e3f7f116d9f8" in bundled_readme("routerbench")
    lc = load("llm_cascades_mmlu")
    assert (lc.n_queries, lc.n_models) == (1816, 9)
    assert lc.confidence is not None and np.all(lc.confidence <= 0)
    assert "rational-llm-cascades" in lc.source and "BSD" in lc.source
    assert "no licence file" in bundled_readme("llm_cascades_mmlu")
    assert (lc.features["source_split"] == "train").sum() == 285
    assert np.all(lc.features["prompt_chars"] > 0)


def test_bundled_data_is_small():
    root = Path(cascade_routing.__file__).parent / "data"
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert total < 2_000_000


# --------------------------------------------------------------------------- the real shared data


def test_shared_routerbench():
    ds = load(shared("routerbench_subset"))
    assert ds.name == "routerbench"
    assert (ds.n_queries, ds.n_dropped, ds.n_models) == (3150, 28, 11)
    assert set(ds.groups) == {"arc-challenge", "mbpp", "winogrande"}
    assert "prompt_chars" in ds.features and "routerdc_split" in ds.features
    # README quick numbers (over all rows; dropping 28 moves them a little)
    gpt4 = ds.models.index("gpt-4-1106-preview")
    assert ds.quality[:, gpt4].mean() == pytest.approx(0.880, abs=0.01)
    assert ds.cost[:, gpt4].mean() == pytest.approx(5.0e-3, rel=0.05)
    # the bundled copy holds the same numbers
    bundled = load("routerbench")
    np.testing.assert_array_equal(bundled.quality, ds.quality)
    np.testing.assert_array_equal(bundled.cost, ds.cost)
    np.testing.assert_array_equal(bundled.query_ids, ds.query_ids)


def test_shared_llm_cascades():
    folder = shared("llm_cascades_confidence")
    mmlu = load(folder)
    assert (mmlu.n_queries, mmlu.n_models) == (1816, 9)
    bundled = load("llm_cascades_mmlu")
    np.testing.assert_array_equal(bundled.confidence, mmlu.confidence)
    np.testing.assert_array_equal(bundled.features["prompt_chars"], mmlu.features["prompt_chars"])
    everything = load_llm_cascades(folder, benchmarks=None)
    assert everything.n_queries == 1816 + 1300 + 1300 + 817 + 300
    assert everything.n_dropped == 0
    # README: -inf confidences in TriviaQA (43 rows) and TruthfulQA (13 rows), kept as-is
    assert int(np.isneginf(everything.confidence).sum()) == 43 + 13
    trivia = everything.groups == "triviaqa"
    assert int(np.isneginf(everything.confidence[trivia]).sum()) == 43
    assert everything.quality[:, everything.models.index("gpt-4o")][
        trivia
    ].mean() == pytest.approx(0.960, abs=0.005)


def test_shared_swebench():
    ds = load_swebench(shared("swebench_verified_bashonly"))
    assert (ds.n_queries, ds.n_models, ds.n_dropped) == (500, 24, 0)
    assert (ds.groups == "django/django").sum() == 231
    assert "CC BY-NC 4.0" in ds.source
    assert "Claude 4.5 Opus medium (20251101)" in ds.models
    rates = ds.quality.mean(axis=0)
    assert rates.min() == pytest.approx(0.090) and rates.max() == pytest.approx(0.744)


def test_shared_mmlu_pro():
    folder = shared("mmlu_pro")
    ds = load_mmlu_pro(folder)
    assert ds.n_queries + ds.n_dropped == 12032
    assert ds.n_models == 29 and ds.cost_is_estimate
    without = [m for m in ds.models if m != "DeepSeek-Coder-V2_5shots"]
    ds2 = load_mmlu_pro(folder, models=without)
    assert ds2.n_dropped < ds.n_dropped
    info = pd.read_csv(folder / "models.csv").set_index("model_key")
    full = load_mmlu_pro(folder, models=["Llama-2-7b-hf_5shots"])
    assert full.n_dropped == 0
    assert full.quality.mean() == pytest.approx(
        info.loc["Llama-2-7b-hf_5shots", "accuracy_pred_eq_answer"]
    )
