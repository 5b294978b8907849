"""The committed fuzz corpora replay cleanly (fuzz/fuzz_bindings.py, fuzz/fuzz_policy.py).

Each input of ``fuzz/corpus/bindings`` is one garbage call into ``_core``: only TypeError or
ValueError may come out. Each input of ``fuzz/corpus/policy`` is one policy file: the loader
raises ValueError, or the policy it returns decides and replays. ``scripts/fuzz.sh`` explores
further for a bounded time; this test keeps what it found as a fast regression check in every
test run.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from _backends import require_backend, require_module

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus" / "bindings"
TARGETS = ("bindings", "policy")


def _load(target: str) -> ModuleType:
    require_backend("cpp")
    require_module("atheris", "test")
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


@pytest.mark.parametrize("target", TARGETS)
def test_corpus_is_committed(target: str) -> None:
    assert len(list((ROOT / "fuzz" / "corpus" / target).iterdir())) >= 20


def test_corpus_replays_without_findings(harness: ModuleType) -> None:
    inputs = sorted(CORPUS.iterdir())
    for path in inputs:
        harness.one_input(path.read_bytes())  # raises on a finding


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
    import numpy as np

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
