"""The policy file: round trips, and a loader that refuses every malformed or foreign file
with ValueError (docs/policy-format.md §8)."""

from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest
from _strategy_cases import same_replay, synthetic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cascade_routing as cr
from cascade_routing.strategies import (
    MAX_POLICY_BYTES,
    Cascade,
    CascadeRouter,
    Router,
    Strategy,
    ThresholdCascade,
    load_policy,
)


@pytest.mark.parametrize("cls", [Router, ThresholdCascade, Cascade, CascadeRouter])
def test_save_load_round_trip_gives_identical_decisions(cls, tmp_path) -> None:
    qe, ce, models, queries, answers, q, c = synthetic(300, 4, 10)
    strat = cls(qe, ce, models, max_work=10**7).fit(
        queries, answers, q, c, budget=float(c.mean()) * 0.5
    )
    path = tmp_path / "policy.json"
    strat.save(path)
    data = json.loads(path.read_text())
    assert data["package_version"] == cr.__version__
    assert set(data["settings"]) == set(cls.setting_names())
    assert data["settings"]["max_work"] == 10**7
    loaded = Strategy.load(path, qe, ce, models=models)
    assert type(loaded) is cls
    assert loaded.model_order == strat.model_order
    assert loaded.settings() == strat.settings()
    same_replay(strat.replay(queries, answers, q, c), loaded.replay(queries, answers, q, c))
    assert cls.load(path, qe, ce, models=models).gamma_ == strat.gamma_


@pytest.fixture(scope="module")
def policy():
    qe, ce, models, queries, answers, q, c = synthetic(100, 3, 11)
    strat = CascadeRouter(qe, ce, models).fit(queries, answers, q, c, budget=0.004)
    assert strat.fit_info_["status"] == "ok"
    # Per-step multipliers, so that lengths can be got wrong.
    strat.set_lambdas([0.5, 1.0], lambdas_expensive=[0.4, 0.9], gamma=0.3)
    return qe, ce, models, strat.to_dict()


def write(path, obj) -> None:
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))


def test_load_rejects_corrupted_and_mismatched_files(policy, tmp_path) -> None:
    qe, ce, models, data = policy
    path = tmp_path / "p.json"
    write(path, data)
    Strategy.load(path, qe, ce, models=models)
    with pytest.raises(ValueError, match="fitted for models"):
        Strategy.load(path, qe, ce, models=["x", "y", "z"])
    with pytest.raises(ValueError, match="fitted for models"):
        Strategy.load(path, qe, ce, models=models[::-1])
    with pytest.raises(ValueError, match="not a Router"):
        Router.load(path, qe, ce, models=models)
    write(path, json.dumps(data)[:50])
    with pytest.raises(ValueError, match="not a readable policy"):
        Strategy.load(path, qe, ce, models=models)
    write(path, {**data, "schema_version": 99})
    with pytest.raises(ValueError, match="schema version 99"):
        Strategy.load(path, qe, ce, models=models)
    write(path, {k: v for k, v in data.items() if k != "lambdas"})
    with pytest.raises(ValueError, match="corrupted"):
        Strategy.load(path, qe, ce, models=models)
    write(path, {**data, "format": "other"})
    with pytest.raises(ValueError, match="not a cascade-routing policy"):
        Strategy.load(path, qe, ce, models=models)
    with pytest.raises(FileNotFoundError):
        Strategy.load(tmp_path / "missing.json", qe, ce, models=models)
    with pytest.raises(TypeError, match="quality_estimator"):
        Strategy.load(path, object(), ce, models=models)


def _with(data, path, value):
    out = copy.deepcopy(data)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


BAD_FIELDS = [
    (("lambdas",), [-1.0, 1.0], "non-negative"),
    (("lambdas_expensive",), [-1.0, 1.0], "non-negative"),
    (("lambdas_expensive",), [1.0], "same length"),
    (("lambdas",), [1.0] * 4, "1 to 3"),
    (("lambdas",), [], "at least one"),
    (("lambdas",), ["1.0", 1.0], "a number"),
    (("lambdas",), [True, 1.0], "a number"),
    (("lambdas",), [10**200, 1.0], "1e\\+100"),
    (("gamma",), 1.5, "gamma"),
    (("gamma",), True, "gamma"),
    (("gamma",), None, "gamma"),
    (("schema_version",), 1.0, "schema version"),
    (("schema_version",), True, "schema version"),
    (("settings", "prefixes_only"), "false", "true or false"),
    (("settings", "force_order"), 0, "true or false"),
    (("settings", "n_samples"), True, "an integer"),
    (("settings", "n_samples"), 128.9, "an integer"),
    (("settings", "n_samples"), 128.0, "an integer"),
    (("settings", "n_samples"), 100, "power of two"),
    (("settings", "max_depth"), 0, "max_depth"),
    (("settings", "max_depth"), "2", "an integer"),
    (("settings", "seed"), -3, "seed"),
    (("settings", "rounding_digits"), 16, "rounding_digits"),
    (("settings", "quality_bounds"), [1.0, 0.0], "lower < upper"),
    (("settings", "quality_bounds"), [0.0], "two entries"),
    (("settings", "quality_bounds"), ["0", 1], "a number"),
    (("settings", "max_work"), 0, "max_work"),
    (("settings", "unknown"), 1, "unknown"),
    (("models",), ["a", "b", "c"], "order must list"),
    (("models",), "model-0", "an array"),
    (("order",), ["model-0", "model-0", "model-1"], "order must list"),
    (("strategy",), "Magic", "not one of"),
    (("strategy",), ["Router"], "a string"),
    (("fit_info",), [], "an object"),
    (("package_version",), 1, "a string"),
    (("extra",), 1, "unknown fields"),
]


@pytest.mark.parametrize("path, value, match", BAD_FIELDS)
def test_every_field_is_checked_with_its_exact_json_type(
    policy, tmp_path, path, value, match
) -> None:
    qe, ce, models, data = policy
    file = tmp_path / "p.json"
    write(file, _with(data, path, value))
    with pytest.raises(ValueError, match=match):
        Strategy.load(file, qe, ce, models=models)


def test_missing_settings_are_refused_but_max_work_may_be_absent(policy, tmp_path) -> None:
    qe, ce, models, data = policy
    file = tmp_path / "p.json"
    older = copy.deepcopy(data)
    del older["settings"]["max_work"]  # written before max_work existed
    write(file, older)
    assert Strategy.load(file, qe, ce, models=models).max_work == cr.DEFAULT_MAX_WORK
    del older["settings"]["seed"]
    write(file, older)
    with pytest.raises(ValueError, match="missing \\['seed'\\]"):
        Strategy.load(file, qe, ce, models=models)


@pytest.mark.parametrize(
    "text, match",
    [
        ('{"gamma": NaN}', "NaN"),
        ('{"gamma": Infinity}', "Infinity"),
        ('{"gamma": 1e400}', "too large"),
        ('{"a": 1, "a": 2}', "twice"),
        ("[" * 100_000 + "]" * 100_000, "not a readable"),
        ('{"n": ' + "9" * 5000 + "}", "not a readable"),
        (b"\xff\xfe{}", "not a readable"),
    ],
)
def test_the_parser_refuses_non_finite_numbers_duplicates_and_deep_nesting(
    tmp_path, text, match
) -> None:
    file = tmp_path / "p.json"
    if isinstance(text, bytes):
        file.write_bytes(text)
    else:
        file.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_policy(file, *synthetic(5, 3, 0)[:2], models=["a", "b", "c"])


def test_files_over_the_size_limit_are_refused_before_reading(
    policy, tmp_path, monkeypatch
) -> None:
    qe, ce, models, data = policy
    file = tmp_path / "big.json"
    text = json.dumps(data)
    file.write_text(text + " " * (MAX_POLICY_BYTES + 1 - len(text)))
    opened = []
    real_open = open

    def spy(*args, **kwargs):
        opened.append(args[0])
        return real_open(*args, **kwargs)

    monkeypatch.setattr("builtins.open", spy)
    with pytest.raises(ValueError, match="MAX_POLICY_BYTES"):
        Strategy.load(file, qe, ce, models=models)
    assert opened == []  # refused from the size alone
    monkeypatch.undo()
    file.write_text(text)
    assert os.path.getsize(file) < MAX_POLICY_BYTES
    Strategy.load(file, qe, ce, models=models)


def test_a_policy_is_bound_to_the_estimators_models(policy, tmp_path) -> None:
    qe, ce, models, data = policy
    file = tmp_path / "p.json"
    write(file, data)

    class Named:
        def __init__(self, inner, names):
            self.inner, self.models = inner, names

        def predict(self, queries, answers):
            return self.inner.predict(queries, answers)

    Strategy.load(file, Named(qe, models), ce)
    with pytest.raises(ValueError, match="fitted for models"):
        Strategy.load(file, Named(qe, models[::-1]), ce)
    with pytest.raises(ValueError, match="has 4"):
        other = synthetic(10, 4, 0)
        Strategy.load(file, other[0], other[1], models=models)


def test_a_policy_cannot_be_loaded_without_names_to_bind_it_to(policy, tmp_path) -> None:
    """With no models= and no estimator that names its models, a reversed model list in the
    file could not be told from the right one: the call is refused before reading."""
    qe, ce, models, data = policy
    file = tmp_path / "p.json"
    reversed_names = dict(data, models=models[::-1], order=list(data["order"])[::-1])
    write(file, reversed_names)
    with pytest.raises(TypeError, match=r"needs models=\[\.\.\.\]"):
        Strategy.load(file, qe, ce)
    with pytest.raises(ValueError, match="was fitted for models"):
        Strategy.load(file, qe, ce, models=models)


# --------------------------------------------------------------------------- fuzzing

_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
_json = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(data, prefix=()):
    yield prefix
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _paths(v, (*prefix, i))


def _only_value_errors(file, qe, ce, models) -> None:
    try:
        load_policy(file, qe, ce, models=models)
    except ValueError:
        pass


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_mutated_policies_raise_only_value_error(policy, tmp_path, data) -> None:
    qe, ce, models, valid = policy
    doc = copy.deepcopy(valid)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = list(_paths(doc))[1:]
        target = data.draw(st.sampled_from(paths))
        action = data.draw(st.sampled_from(["replace", "delete"]))
        parent = doc
        for key in target[:-1]:
            parent = parent[key]
        if action == "delete" and isinstance(parent, dict):
            del parent[target[-1]]
        else:
            parent[target[-1]] = data.draw(_json)
    file = tmp_path / "fuzz.json"
    file.write_text(json.dumps(doc))
    _only_value_errors(file, qe, ce, models)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=_json, raw=st.binary(max_size=64))
def test_fuzz_random_json_and_bytes_raise_only_value_error(policy, tmp_path, doc, raw) -> None:
    qe, ce, models, _ = policy
    file = tmp_path / "fuzz.json"
    file.write_text(json.dumps(doc))
    _only_value_errors(file, qe, ce, models)
    file.write_bytes(raw)
    _only_value_errors(file, qe, ce, models)


def test_the_saved_lambdas_are_finite_numbers(policy) -> None:
    _, _, _, data = policy
    assert all(np.isfinite(data["lambdas"])) and len(data["lambdas"]) <= 3
