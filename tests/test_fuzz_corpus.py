"""The committed fuzz corpus of the bindings replays cleanly (fuzz/fuzz_bindings.py).

Each input of ``fuzz/corpus/bindings`` is one garbage call into ``_core``; only TypeError or
ValueError may come out. ``scripts/fuzz.sh`` explores further for a bounded time; this test
keeps what it found as a fast regression check in every test run.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from _backends import require_backend, require_module

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus" / "bindings"


@pytest.fixture(scope="module")
def harness() -> ModuleType:
    require_backend("cpp")
    require_module("atheris", "test")
    spec = importlib.util.spec_from_file_location(
        "fuzz_bindings", ROOT / "fuzz" / "fuzz_bindings.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_corpus_is_committed() -> None:
    assert len(list(CORPUS.iterdir())) >= 20


def test_corpus_replays_without_findings(harness: ModuleType) -> None:
    inputs = sorted(CORPUS.iterdir())
    for path in inputs:
        harness.one_input(path.read_bytes())  # raises on a finding


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
