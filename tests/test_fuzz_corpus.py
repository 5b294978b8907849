"""The committed fuzz corpora replay cleanly (fuzz/fuzz_bindings.py, fuzz/fuzz_policy.py,
fuzz/fuzz_decider_file.py).

Each input of ``fuzz/corpus/bindings`` is one garbage call into ``_core`` (the prepared
decider ``_core.Decider`` included): only TypeError or ValueError may come out (and KeyError
for a run-set missing from a decider's table). Each input of ``fuzz/corpus/policy`` is one
policy file (some with a run-set table): the loader raises ValueError, or the policy it
returns decides and replays. Each input of ``fuzz/corpus/decider_file`` is one decider file
for the C ABI's ``cr_decider_load``: it returns CR_BAD_FILE, or a decider that answers with
status codes. ``scripts/fuzz.sh`` explores further for a bounded time; this test keeps what it
found as a fast regression check in every test run.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from _backends import require_backend, require_module

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus" / "bindings"
TARGETS = ("bindings", "policy", "decider_file")


def _load(target: str) -> ModuleType:
    require_backend("cpp")
    require_module("atheris", "test")
    if target == "decider_file":
        require_module("cffi", "test")
    spec = importlib.util.spec_from_file_location(
        f"fuzz_{target}", ROOT / "fuzz" / f"fuzz_{target}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def harness() -> ModuleType:
    return _load("bindings")


@pytest.fixture(scope="module")
def policy_harness() -> ModuleType:
    return _load("policy")


@pytest.fixture(scope="module")
def file_harness() -> ModuleType:
    return _load("decider_file")


@pytest.mark.parametrize("target", TARGETS)
def test_corpus_is_committed(target: str) -> None:
    assert len(list((ROOT / "fuzz" / "corpus" / target).iterdir())) >= 20


def test_corpus_replays_without_findings(harness: ModuleType) -> None:
    """Every input replays; the corpus reaches every call of the prepared decider, and
    decisions that return as well as refused ones."""
    inputs = sorted(CORPUS.iterdir())
    calls: dict[str, int] = {}
    original = harness._call_decider

    def counting(fdp: object, fn: str, *args: object) -> None:
        calls[fn] = calls.get(fn, 0) + 1
        original(fdp, fn, *args)

    harness._call_decider = counting
    try:
        for path in inputs:
            harness.one_input(path.read_bytes())  # raises on a finding
    finally:
        harness._call_decider = original
    assert set(calls) == set(harness._DECIDER_CALLS), calls
    assert sum(calls.values()) >= 20, calls


def test_policy_corpus_replays_and_reaches_both_outcomes(policy_harness: ModuleType) -> None:
    """Every policy input is refused with ValueError or loads and decides; the corpus holds
    both kinds, so the harness really reaches a working policy."""
    loaded, refused = 0, 0
    original = policy_harness.load_policy

    def counting(*args: object, **kwargs: object) -> object:
        nonlocal loaded, refused
        try:
            strategy = original(*args, **kwargs)
        except ValueError:
            refused += 1
            raise
        loaded += 1
        return strategy

    policy_harness.load_policy = counting
    try:
        for path in sorted((ROOT / "fuzz" / "corpus" / "policy").iterdir()):
            policy_harness.one_input(path.read_bytes())  # raises on a finding
    finally:
        policy_harness.load_policy = original
    assert loaded >= 1 and refused >= 20


def test_policy_corpus_reaches_the_runset_table(policy_harness: ModuleType) -> None:
    """The corpus holds policies with a run-set table that load (and decide with it), and
    tables the loader refuses for their content, past the checksum."""
    with_table, refused = 0, set()
    original = policy_harness.load_policy

    def counting(*args: object, **kwargs: object) -> object:
        nonlocal with_table
        try:
            strategy = original(*args, **kwargs)
        except ValueError as exc:
            text = str(exc)
            if "runset_table" in text:
                refused.add("checksum" if "checksum" in text else "content")
            raise
        with_table += getattr(strategy, "runset_table_", None) is not None
        return strategy

    policy_harness.load_policy = counting
    try:
        for path in sorted((ROOT / "fuzz" / "corpus" / "policy").iterdir()):
            policy_harness.one_input(path.read_bytes())
    finally:
        policy_harness.load_policy = original
    assert with_table >= 1 and refused == {"checksum", "content"}, (with_table, refused)


def test_decider_file_corpus_replays_and_reaches_both_outcomes(file_harness: ModuleType) -> None:
    """Every decider file is refused with CR_BAD_FILE or loads and decides with status codes;
    the corpus holds both, and files refused past the CRC-32 check."""
    statuses: list[tuple[str, int]] = []
    original = file_harness._note

    def counting(kind: str, status: int) -> None:
        statuses.append((kind, status))
        original(kind, status)

    file_harness._note = counting
    words = set()
    try:
        for path in sorted((ROOT / "fuzz" / "corpus" / "decider_file").iterdir()):
            file_harness.one_input(path.read_bytes())  # raises on a finding
            if statuses and statuses[-1] == ("status", 7):
                words.add(file_harness.FFI.string(file_harness.LIB.cr_last_error()).decode())
    finally:
        file_harness._note = original
    loads = [s for kind, s in statuses if kind == "status"]
    decisions = [s for kind, s in statuses if kind == "decide"]
    assert loads.count(0) >= 3 and loads.count(7) >= 10, loads
    assert 0 in decisions and len(set(decisions)) >= 2, decisions
    past_crc = [w for w in words if "CRC-32" not in w and "CRDECIDE" not in w]
    assert len(past_crc) >= 3, words


def test_decider_file_harness_lets_only_status_codes_out(file_harness: ModuleType) -> None:
    """The harness itself can fail: a status other than CR_OK / CR_BAD_FILE is a finding."""
    original = file_harness.LIB

    class Broken:
        def __getattr__(self, name: str) -> object:
            return getattr(original, name)

        def cr_decider_load(self, path: bytes, out: object) -> int:
            return 2  # CR_BAD_SIZE: not what a file reader returns

    file_harness.LIB = Broken()
    try:
        with pytest.raises(AssertionError):
            file_harness.one_input(b"\x00" * 64)
    finally:
        file_harness.LIB = original


def test_core_decider_refuses_huge_factors_and_means() -> None:
    """Fuzzing findings (regressions): a run-set factor of 1e308 was accepted and then made
    every decision there fail as if its quality were not finite; a finite quality of 1e308
    was decided with an infinite utility. Both are refused, naming the argument."""
    require_backend("cpp")
    from cascade_routing import _core

    def build(factor: float) -> object:
        normals = np.full((4, 2), 0.1)
        factors = np.array([[[0.1, 0.0], [factor, 0.1]]])
        lam = np.array([0.5])
        runsets = np.zeros(1, dtype=np.uint64)
        return _core.Decider(
            2, 2, normals, lam, lam, 2, False, False, 8, -np.inf, np.inf, runsets, factors
        )

    with pytest.raises(ValueError, match=r"factors of run-set 0 must be finite and at most 1e100"):
        build(1e308)
    d: Any = build(0.05)
    with pytest.raises(ValueError, match=r"quality, cost, ran.*beyond 1e100 in magnitude"):
        d.decide(np.array([1e308, 0.5]), np.array([0.5, 0.5]), 0, False)
    nm, members, util = d.decide(np.array([1e100, 0.5]), np.array([0.5, 0.5]), 0, False)
    assert nm == 0 and members == 1 and np.isfinite(util)


def test_policy_harness_lets_only_value_errors_out(policy_harness: ModuleType) -> None:
    """The harness itself can fail: a loader that raises anything but ValueError is a finding."""
    original = policy_harness.load_policy

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("settings")

    policy_harness.load_policy = broken
    try:
        with pytest.raises(KeyError):
            policy_harness.one_input(b"\x00" * 64)
    finally:
        policy_harness.load_policy = original


def test_harness_lets_only_type_and_value_errors_out(harness: ModuleType) -> None:
    """The harness itself can fail: an unexpected exception from _core propagates."""
    original = harness._core
    try:

        class Broken:
            def __getattr__(self, name: str) -> object:
                def call(*args: object, **kwargs: object) -> None:
                    raise RuntimeError("not a TypeError or ValueError")

                return call

        harness._core = Broken()
        with pytest.raises(RuntimeError):
            harness.one_input(bytes(np.arange(64, dtype=np.uint8)))
    finally:
        harness._core = original


@pytest.mark.parametrize(
    ("ran", "expensive", "error", "match"),
    [
        ([-1], None, ValueError, "ran must hold bit masks between 0 and 2\\*\\*64 - 1"),
        ([2**64], None, ValueError, "ran must hold bit masks between 0 and 2\\*\\*64 - 1"),
        ([1.0], None, TypeError, "ran must hold integer bit masks, got dtype float64"),
        ([np.nan], None, TypeError, "ran must hold integer bit masks"),
        ([0], [300], None, ""),
        ([0], [-1], None, ""),
        ([0], [0.5], TypeError, "expensive must hold booleans"),
    ],
)
def test_decider_batch_masks_and_coins_are_checked(
    ran: list[Any], expensive: list[Any] | None, error: type[Exception] | None, match: str
) -> None:
    """Fuzzing findings (regressions): ``Decider.decide_batch`` let NumPy's OverflowError out
    for a negative or too large mask or coin, and truncated a float mask (1.5 -> run-set 1)
    silently. Masks are integers in [0, 2**64); coins booleans or integers (non-zero: the
    expensive policy)."""
    require_backend("cpp")
    from strategies._decider_cases import _strategy

    d = _strategy(np.random.default_rng(1), 4, "cov").decider()
    q, c = np.full((1, 4), 0.5), np.full((1, 4), 0.1)
    if error is None:
        got = d.decide_batch(q, c, ran, expensive)
        want = d.decide_batch(q, c, ran, [True])
        assert [w.tolist() for w in got] == [w.tolist() for w in want]
        return
    with pytest.raises(error, match=match):
        d.decide_batch(q, c, ran, expensive)


def test_core_decider_names_ran_for_an_array_mask() -> None:
    """Fuzzing finding (regression): a NumPy array of several integers as the mask raised
    NumPy's "only integer scalar arrays can be converted to a scalar index", which names no
    argument."""
    require_backend("cpp")
    from cascade_routing import _core

    k = 2
    d = _core.Decider(
        k, 0, np.zeros((0, k)), np.zeros(1), np.zeros(1), k, False, False, 8, -np.inf, np.inf,
        np.zeros(0, dtype=np.uint64), np.zeros((0, k)),
    )  # fmt: skip
    for call in (
        lambda: d.has_runset(np.array([1, 2])),
        lambda: d.decide(np.zeros(k), np.zeros(k), np.array([1, 2]), False),
    ):
        with pytest.raises(TypeError, match="ran must be an int bit mask, got numpy.ndarray"):
            call()
    assert d.has_runset(np.array(1)) and d.has_runset(np.int64(3))
