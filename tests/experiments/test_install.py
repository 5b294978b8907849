"""The lean install: the library imports without the [eval] extra; the CLI says how to get it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

EVAL_MODULES = ("pandas", "sklearn", "matplotlib", "tqdm")


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_library_does_not_import_the_eval_extra() -> None:
    result = _run(
        f"""
        import sys
        import cascade_routing
        loaded = [m for m in {EVAL_MODULES!r} if m in sys.modules]
        print(",".join(loaded))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_the_library_works_with_the_eval_extra_absent() -> None:
    # None in sys.modules makes every import of these modules fail, as if not installed.
    result = _run(
        f"""
        import sys
        for name in {EVAL_MODULES!r}:
            sys.modules[name] = None
        import cascade_routing as cr
        import numpy as np
        r = cr.Router(cr.TwoPhaseQuality(np.array([[0.2, 0.9]]), np.array([[0.2, 0.9]])),
                      cr.ConstantCost([1.0, 2.0]), ["a", "b"])
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_the_cli_without_the_eval_extra_says_how_to_install_it() -> None:
    for command in ("datasets", "evaluate", "reproduce"):
        result = _run(
            f"""
            import sys
            sys.modules["pandas"] = None
            from cascade_routing.cli import main
            sys.exit(main([{command!r}, "--no-progress"] if {command!r} != "datasets"
                          else ["datasets"]))
            """
        )
        assert result.returncode == 2, result.stderr
        assert 'pip install "cascade-routing[eval]"' in result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_cli_help_works_without_the_eval_extra() -> None:
    result = _run(
        """
        import sys
        for name in ("pandas", "sklearn", "matplotlib", "tqdm"):
            sys.modules[name] = None
        from cascade_routing.cli import main
        sys.exit(main(["evaluate", "--help"]))
        """
    )
    assert result.returncode == 0, result.stderr
    assert "--bootstrap" in result.stdout
