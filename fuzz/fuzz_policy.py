#!/usr/bin/env python3
"""Coverage-guided fuzzing of the policy loader: any file in, only ValueError out.

Every input becomes one policy file handed to ``load_policy``: either the input's raw bytes,
or a valid saved policy (a fitted ``CascadeRouter`` with per-step multipliers) to which the
input applies a few structured mutations: a field replaced by another JSON value (wrong types,
NaN / Infinity tokens, huge or negative numbers, long lists, deep nesting), a field deleted,
an unknown field added, or a list truncated or extended. Half of the mutated files start from
a policy with a run-set table (``runset_table``, a ``CascadeRouter`` over ``DefaultUncertainty``
with a full covariance or independent deviations): its fields mutated the same way, or its
masks, factors (NaN, inf, negative, cut or extended base64), order and model count edited, and
then, most of the time, its SHA-256 written again so that the edit reaches the checks behind
the checksum. The loader is pure Python, so atheris
instruments it (``cascade_routing.strategies.persistence`` and ``cascade_routing.validation``)
and learns from its branches.

Whatever the file holds, ``load_policy`` either returns a strategy that then decides and
replays without error, or raises ``ValueError`` (docs/policy-format.md §8). Anything else is a
finding.

    python fuzz/fuzz_policy.py -max_total_time=60 NEW_DIR fuzz/corpus/policy
    scripts/fuzz.sh [SECONDS]        (bounded run of every target, as in CI)
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any

import atheris
import numpy as np

with atheris.instrument_imports(include=["cascade_routing"]):
    from cascade_routing import CascadeRouter, DefaultUncertainty, TwoPhaseCost, TwoPhaseQuality
    from cascade_routing.strategies import load_policy
    from cascade_routing.strategies.persistence import _table_digest

K = 3
MODELS = [f"model-{j}" for j in range(K)]


def _fitted() -> tuple[Any, Any, dict[str, Any], np.ndarray]:
    """Estimators, the dict of a fitted policy and the true quality it was fitted on."""
    rng = np.random.default_rng(11)
    n = 100
    skill = np.linspace(0.35, 0.9, K)
    true_q = (rng.uniform(size=(n, K)) < skill).astype(float)
    true_c = np.abs(rng.normal(np.geomspace(1, 20, K), 0.3, size=(n, K))) * 1e-3
    ante = np.clip(0.5 * skill + 0.3 * true_q + rng.normal(0, 0.15, (n, K)), 0, 1)
    post = np.clip(0.15 + 0.7 * true_q + rng.normal(0, 0.1, (n, K)), 0, 1)
    qe = TwoPhaseQuality(ante, post, np.full((n, K), 0.03))
    ce = TwoPhaseCost(np.tile(true_c.mean(axis=0), (n, 1)), true_c)
    strat = CascadeRouter(qe, ce, MODELS).fit(
        np.arange(n), [["a"] * K] * n, true_q, true_c, budget=0.004
    )
    strat.set_lambdas([0.5, 1.0], lambdas_expensive=[0.4, 0.9], gamma=0.3)
    return qe, ce, strat.to_dict(), true_q


QE, CE, VALID, TRUE_Q = _fitted()


def _fitted_table(diagonal: bool) -> tuple[Any, dict[str, Any]]:
    """A quality estimator with run-set uncertainty and a fitted policy holding its table."""
    rng = np.random.default_rng(12)
    n = 60
    qe = DefaultUncertainty(QE, diagonal=diagonal).fit(np.arange(n), [["a"] * K] * n)
    strat = CascadeRouter(qe, CE, MODELS, order=MODELS[::-1]).fit(
        np.arange(n), [["a"] * K] * n, TRUE_Q[:n], np.abs(rng.normal(5e-3, 1e-3, (n, K))),
        budget=0.004,
    )  # fmt: skip
    doc = strat.to_dict()
    assert "runset_table" in doc, "the table policy has no run-set table"
    return qe, doc


TABLES = [_fitted_table(False), _fitted_table(True)]
_DIR = tempfile.TemporaryDirectory(prefix="fuzz-policy-")
_FILE = Path(_DIR.name) / "policy.json"


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value in a JSON document, the root included."""
    out = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out += _paths(value, (*prefix, i))
    return out


_NUMBERS = (0, 1, -1, 0.5, -0.5, 1e-300, 1e300, -1e300, 2**63, -(2**63), 2**80, 64, 65, 128.9)


def _value(fdp: atheris.FuzzedDataProvider, depth: int = 0) -> Any:
    """One JSON value chosen by the input (NaN and infinities included)."""
    kind = fdp.ConsumeIntInRange(0, 10)
    if kind == 0:
        return None
    if kind == 1:
        return fdp.ConsumeBool()
    if kind == 2:
        return fdp.ConsumeInt(8)
    if kind == 3:
        return fdp.ConsumeRegularFloat()
    if kind == 4:
        return fdp.PickValueInList([math.nan, math.inf, -math.inf])
    if kind == 5:
        return fdp.PickValueInList(list(_NUMBERS))
    if kind == 6:
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 24))
    if kind == 7:
        return fdp.PickValueInList(["false", "true", "1", "CascadeRouter", "Router", *MODELS])
    if kind == 8 and depth < 3:
        return [_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 6))]
    if kind == 9 and depth < 3:
        return {
            fdp.ConsumeUnicodeNoSurrogates(6): _value(fdp, depth + 1)
            for _ in range(fdp.ConsumeIntInRange(0, 4))
        }
    if kind == 10:
        nested: Any = 0
        for _ in range(fdp.ConsumeIntInRange(1, 300)):
            nested = [nested]
        return nested
    return fdp.ConsumeFloat()


def _edit_table(fdp: atheris.FuzzedDataProvider, table: dict[str, Any]) -> None:
    """Edits of the run-set table's content (the structure is _mutated's job)."""
    op = fdp.ConsumeIntInRange(0, 5)
    runsets, factors = table.get("runsets"), table.get("factors")
    if op == 0 and isinstance(runsets, list) and runsets:  # a mask
        i = fdp.ConsumeIntInRange(0, len(runsets) - 1)
        runsets[i] = fdp.PickValueInList([0, 1, 2, 5, 7, 8, 2**63, 2**64 - 1, runsets[0]])
    elif op == 1 and isinstance(factors, str):  # a factor value
        try:
            raw = bytearray(base64.b64decode(factors))
        except (ValueError, binascii.Error):
            return
        if len(raw) >= 8:
            at = 8 * fdp.ConsumeIntInRange(0, len(raw) // 8 - 1)
            value = fdp.PickValueInList([math.nan, math.inf, -math.inf, -1.0, 1e308, 0.0])
            struct.pack_into("<d", raw, at, value)
        table["factors"] = base64.b64encode(bytes(raw)).decode()
    elif op == 2 and isinstance(factors, str):  # cut or extended
        cut = fdp.ConsumeIntInRange(0, len(factors))
        table["factors"] = factors[:cut] + fdp.PickValueInList(["", "AAAAAAAAAAA=", "=", "*"])
    elif op == 3 and isinstance(runsets, list):  # a run-set dropped or added
        if runsets and fdp.ConsumeBool():
            del runsets[fdp.ConsumeIntInRange(0, len(runsets) - 1)]
        else:
            runsets.append(fdp.PickValueInList([3, 4, 8, 2**64 - 1]))
    elif op == 4:  # the order or the model count
        order = fdp.PickValueInList([MODELS, MODELS[::-1], MODELS[:2], ["x", "y", "z"]])
        table["order"] = list(order)  # a copy: later mutations must not edit MODELS
        table["n_models"] = fdp.PickValueInList([K, K - 1, K + 1, 0, 64, 65])
    elif op == 5:
        table["mode"] = fdp.PickValueInList(["covariance", "independent", "exact", ""])
        table["complete"] = fdp.ConsumeBool()


def _resign(table: Any, models: list[str]) -> None:
    """Write the table's SHA-256 again for its (edited) content, if its fields allow."""
    try:
        masks = np.array(table["runsets"], dtype=np.uint64).astype("<u8").tobytes()
        values = base64.b64decode(table["factors"].encode("ascii"), validate=True)
        table["sha256"] = _table_digest(table["mode"], models, table["order"], masks, values)
    except (KeyError, TypeError, ValueError, OverflowError, AttributeError, binascii.Error):
        pass


def _mutated(fdp: atheris.FuzzedDataProvider, base: dict[str, Any] | None = None) -> bytes:
    doc = json.loads(json.dumps(VALID if base is None else base))
    if base is not None and fdp.ConsumeBool():
        for _ in range(fdp.ConsumeIntInRange(1, 2)):
            _edit_table(fdp, doc["runset_table"])
    for _ in range(fdp.ConsumeIntInRange(1 if base is None else 0, 3)):
        # Shallow targets only: nested values stacked into each other could outgrow what
        # json.dumps can write (deep nesting is mode 3's job).
        paths = [path for path in _paths(doc) if len(path) < 16]
        target = fdp.PickValueInList(paths)
        action = fdp.ConsumeIntInRange(0, 3)
        if not target:
            doc = _value(fdp) if action == 0 else doc
            continue
        parent = doc
        for key in target[:-1]:
            parent = parent[key]
        key = target[-1]
        if action == 0:
            parent[key] = _value(fdp)
        elif action == 1 and isinstance(parent, dict):
            del parent[key]
        elif action == 2 and isinstance(parent, dict):
            parent[fdp.ConsumeUnicodeNoSurrogates(8)] = _value(fdp)
        elif isinstance(parent[key], list):
            items = parent[key]
            parent[key] = items[: fdp.ConsumeIntInRange(0, len(items))] + [
                _value(fdp) for _ in range(fdp.ConsumeIntInRange(0, 3))
            ]
        else:
            parent[key] = _value(fdp)
    if base is not None and isinstance(doc, dict) and fdp.ConsumeIntInRange(0, 3) != 0:
        _resign(doc.get("runset_table"), MODELS)
    try:
        return json.dumps(doc, allow_nan=True).encode()
    except RecursionError:  # still too deep to write: a deep document all the same
        return b"[" * 5000 + b"]" * 5000


def one_input(data: bytes) -> None:
    """The fuzz target: one policy file built from ``data``."""
    fdp = atheris.FuzzedDataProvider(data)
    # Modes 4-7 are modes 0-3 on the policy with a run-set table (a choice among 8 and among
    # 4 agree on half of the bytes: the committed inputs of modes 0-3 keep their meaning).
    mode = fdp.ConsumeIntInRange(0, 7)
    qe, base = QE, None
    if mode >= 4:
        mode -= 4
        qe, base = TABLES[0] if mode != 0 else TABLES[1]
    models = [MODELS, MODELS[::-1], MODELS[:2], ["x", "y", "z"]][fdp.ConsumeIntInRange(0, 3)]
    if mode == 0:
        raw = fdp.ConsumeBytes(fdp.remaining_bytes())
    elif mode == 3:  # nested deeper than any parser's recursion limit
        depth = fdp.ConsumeIntInRange(1, 100_000)
        inner = json.dumps(VALID if base is None else base).encode()
        raw = b'{"a":' * depth + inner + b"}" * depth
    else:
        if base is not None and mode == 2:
            qe, base = TABLES[1]
        raw = _mutated(fdp, base)
    _FILE.write_bytes(raw)
    try:
        strat = load_policy(_FILE, qe, CE, models=models)
    except ValueError:
        return
    # A policy that loads must decide and replay: a field the loader let through that breaks
    # the strategy later is a finding too.
    strat.next_model(0, [None] * K)
    strat.select(1, ["a"] * K)
    rows = np.arange(4)
    strat.replay(rows, [["a"] * K] * 4, TRUE_Q[rows], np.full((4, K), 1e-3))


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
