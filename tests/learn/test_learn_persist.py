"""Save/load of the learned estimators, and the price-table cost model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _learn_synth import make_logs

from cascade_routing import UnknownModelError
from cascade_routing.learn import (
    LearnedQuality,
    ModelAnswer,
    PriceTableCost,
    load_estimator,
    save_estimator,
)


@pytest.fixture(scope="module")
def logs() -> dict[str, Any]:
    return make_logs(200, seed=3)


def test_quality_round_trip_is_identical(logs: dict[str, Any], tmp_path: Path) -> None:
    est = LearnedQuality(
        logs["models"],
        n_hash_features=1024,
        n_folds=3,
        n_random_runsets=3,
        scale_grid=(0.0, 1.0),
        calibration="isotonic",
        seed=2,
    )
    est.fit(logs["queries"][:150], logs["answers"][:150], logs["quality"][:150])
    rng = np.random.default_rng(0)
    answers = [[a if rng.random() < 0.5 else None for a in row] for row in logs["answers"][150:]]
    before = est.predict(logs["queries"][150:], answers)
    path = save_estimator(est, tmp_path / "quality")
    assert path.name == "quality.json" and (tmp_path / "quality.npz").exists()
    meta = json.loads(path.read_text())
    assert meta["format_version"] == 2 and meta["class"] == "LearnedQuality"
    loaded = load_estimator(path)
    assert isinstance(loaded, LearnedQuality)
    after = loaded.predict(logs["queries"][150:], answers)
    assert np.array_equal(before.mean, after.mean)
    assert before.cov is not None and after.cov is not None
    assert np.array_equal(before.cov, after.cov)
    ran = np.array([True, False, False, True])
    assert np.array_equal(est.cholesky(ran), loaded.cholesky(ran))


def test_load_refuses_tampered_or_foreign_files(logs: dict[str, Any], tmp_path: Path) -> None:
    cost = PriceTableCost(logs["models"], {m: (1e-6, 2e-6) for m in logs["models"]})
    cost.fit(logs["queries"], logs["answers"])
    path = save_estimator(cost, tmp_path / "cost")
    npz = tmp_path / "cost.npz"
    npz.write_bytes(npz.read_bytes() + b"x")
    with pytest.raises(ValueError, match="checksum"):
        load_estimator(path)
    meta = json.loads(path.read_text())
    meta["format_version"] = 99
    path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="format version 99"):
        load_estimator(path)
    (tmp_path / "other.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not a saved"):
        load_estimator(tmp_path / "other.json")
    with pytest.raises(TypeError, match="estimator must be"):
        save_estimator(object(), tmp_path / "x")  # type: ignore[arg-type]


def test_price_table_cost(tmp_path: Path) -> None:
    models = ["a", "b"]
    prices = {"a": (1e-6, 3e-6), "b": (2e-6, 5e-6)}
    # Output tokens = 2 + 0.5 * input tokens for both models, known from the tokens.
    queries = [{"text": "q", "input_tokens": float(t)} for t in (10, 20, 40, 80)]
    answers = [
        [ModelAnswer("x" * 3, tokens=("t",) * int(2 + 0.5 * q["input_tokens"])) for _ in models]
        for q in queries
    ]
    cost = PriceTableCost(models, prices).fit(queries, answers)
    new = [{"text": "new", "input_tokens": 60.0}]
    expected = [60 * 1e-6 + (2 + 30) * 3e-6, 60 * 2e-6 + (2 + 30) * 5e-6]
    assert np.allclose(cost.predict_ex_ante(new)[0], expected)
    observed = ModelAnswer("y", cost=0.5)
    assert np.allclose(cost.predict(new, [[observed, None]])[0], [0.5, expected[1]])
    # Without tokens, the output length is what the observed cost pays for.
    paid = [[ModelAnswer("z", cost=q["input_tokens"] * 1e-6 + 7 * 3e-6), None] for q in queries]
    by_cost = PriceTableCost(["a", "b"], prices)
    paid = [[r[0], ModelAnswer("z", cost=1e-5)] for r in paid]
    by_cost.fit(queries, paid)
    assert by_cost.predict_ex_ante(new)[0, 0] == pytest.approx(60 * 1e-6 + 7 * 3e-6)
    loaded = load_estimator(save_estimator(cost, tmp_path / "c"))
    assert np.array_equal(loaded.predict(new, [[None, None]]), cost.predict(new, [[None, None]]))
    # Text only: len(text) / chars_per_token input tokens.
    assert cost.predict_ex_ante(["abcd" * 10])[0, 0] == pytest.approx(10 * 1e-6 + (2 + 5) * 3e-6)


def test_price_table_cost_bad_input() -> None:
    with pytest.raises(UnknownModelError, match="zzz"):
        PriceTableCost(["a"], {"a": (1.0, 1.0), "zzz": (1.0, 1.0)})
    with pytest.raises(ValueError, match="lacks models"):
        PriceTableCost(["a", "b"], {"a": (1.0, 1.0)})
    with pytest.raises(ValueError, match="prices"):
        PriceTableCost(["a"], {"a": (-1.0, 1.0)})
    cost = PriceTableCost(["a"], {"a": (1.0, 1.0)})
    with pytest.raises(RuntimeError, match="not fitted"):
        cost.predict(["q"], [[None]])
    with pytest.raises(TypeError, match=r"answers\[0\]\[0\]"):
        cost.fit(["q"], [["text"]])
    with pytest.raises(ValueError, match="no answer of model 'a'"):
        cost.fit(["q"], [[ModelAnswer("x")]])
    with pytest.raises(ValueError, match=r"queries\[0\]\['input_tokens'\]"):
        cost.fit([{"input_tokens": float("nan")}], [[ModelAnswer("x", cost=1.0)]])
