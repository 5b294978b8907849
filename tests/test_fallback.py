"""Backend selection with what it falls back from hidden (STYLE.md practice 8).

Each case runs in a fresh interpreter: a meta-path finder installed before ``cascade_routing``
is imported makes ``cascade_routing._core`` (and optionally ``numba``) unimportable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import cascade_routing as cr
from _backends import require_backend

_PROBE = textwrap.dedent(
    r"""
    import json, sys, warnings

    blocked = set(sys.argv[1].split(",")) - {""}

    class Blocker:
        # Refuses the blocked modules (and their submodules) as if they were not installed.
        def find_spec(self, name, path=None, target=None):
            if any(name == b or name.startswith(b + ".") for b in blocked):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
            return None

    sys.meta_path.insert(0, Blocker())
    out = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            import cascade_routing as cr
            out["backend"] = cr.backend()
            out["backend_again"] = cr.backend()
            # What choosing the backend imported (available_backends below imports the rest).
            out["numba_imported"] = "numba" in sys.modules
            out["core_imported"] = "cascade_routing._core" in sys.modules
            out["available"] = list(cr.available_backends())
            res = cr.search_supermodel([0.2, 0.9, 0.5], [0.1, 0.5, 0.2], 0.1, var=[0.01] * 3)
            out["supermodel"] = list(res.supermodel)
        except Exception as exc:
            out["error"] = [type(exc).__name__, str(exc)]
    out["warnings"] = [[w.category.__name__, str(w.message)] for w in caught]
    out["numba_importable"] = "numba" in sys.modules
    print("RESULT " + json.dumps(out))
    """
)


def _probe(blocked: tuple[str, ...] = (), env_backend: str | None = None) -> dict:
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(cr.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env.pop("CASCADE_ROUTING_BACKEND", None)
    if env_backend is not None:
        env["CASCADE_ROUTING_BACKEND"] = env_backend
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, ",".join(blocked)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line.removeprefix("RESULT "))


def _fallback_warnings(out: dict) -> list[str]:
    return [msg for cat, msg in out["warnings"] if cat == "RuntimeWarning"]


def test_default_is_cpp_without_warning() -> None:
    require_backend("cpp")
    out = _probe()
    assert out.get("backend") == "cpp", out
    assert _fallback_warnings(out) == [], out
    assert out["available"][0] == "cpp"


def test_without_core_falls_back_to_numba_with_one_warning() -> None:
    require_backend("numba")
    out = _probe(blocked=("cascade_routing._core",))
    assert "error" not in out, out
    assert out["backend"] == out["backend_again"] == "numba", out
    assert out["available"] == ["numba", "numpy"], out
    assert out["supermodel"] == [1], out
    assert not out["core_imported"]
    warns = _fallback_warnings(out)
    assert len(warns) == 1, out["warnings"]
    assert "numba" in warns[0] and "cpp" in warns[0] and "_core" in warns[0], warns


def test_without_core_and_numba_falls_back_to_numpy() -> None:
    out = _probe(blocked=("cascade_routing._core", "numba"))
    assert "error" not in out, out
    assert out["backend"] == out["backend_again"] == "numpy", out
    assert out["available"] == ["numpy"], out
    assert out["supermodel"] == [1], out
    assert not out["numba_imported"] and not out["core_imported"]
    assert not out["numba_importable"]
    warns = _fallback_warnings(out)
    assert len(warns) == 1, out["warnings"]
    assert "numpy" in warns[0] and "cpp" in warns[0] and "numba" in warns[0], warns


def test_env_var_forces_numpy() -> None:
    out = _probe(env_backend="numpy")
    assert "error" not in out, out
    assert out["backend"] == "numpy", out
    assert _fallback_warnings(out) == [], out
    # Forcing the reference does not even load the compiled backends.
    assert not out["core_imported"] and not out["numba_imported"], out


def test_env_var_forces_numba() -> None:
    require_backend("numba")
    out = _probe(env_backend="numba")
    assert out.get("backend") == "numba", out
    assert _fallback_warnings(out) == [], out


def test_env_var_forcing_a_missing_backend_raises_import_error() -> None:
    out = _probe(blocked=("cascade_routing._core",), env_backend="cpp")
    assert out.get("error", [None])[0] in ("ImportError", "ModuleNotFoundError"), out


@pytest.mark.parametrize("value", ["fortran", "cuda", "c++"])
def test_env_var_invalid_value(value: str) -> None:
    out = _probe(env_backend=value)
    assert "error" in out, out
    kind, msg = out["error"]
    assert kind == "ValueError", out
    assert "CASCADE_ROUTING_BACKEND" in msg and value in msg, msg
    for name in ("cpp", "numba", "numpy"):
        assert name in msg, msg


def test_set_backend_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="backend"):
        cr.set_backend("fortran")
    with pytest.raises(ValueError, match="backend"), cr.use_backend("gpu"):
        pass


def test_use_backend_restores_the_previous_backend() -> None:
    before = cr.backend()
    with cr.use_backend("numpy"):
        assert cr.backend() == "numpy"
        with pytest.raises(RuntimeError), cr.use_backend("numpy"):
            raise RuntimeError("boom")
        assert cr.backend() == "numpy"
    assert cr.backend() == before
