"""Ctrl-C stops a long call into the compiled core (issue 10, finding 1).

A search over 2^30 candidates (lam = 0, no depth limit: nothing is pruned) takes seconds. In a
child process, each kernel is started on such an input, SIGINT is sent 0.3 s later, and the
child must raise KeyboardInterrupt within a second of the signal, then still give correct
answers. The kernels are called through ``_core`` directly: the public functions refuse a
search this large (their work cap), which is the other half of the fix.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from _backends import require_backend

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="SIGINT cannot be sent to a child process on Windows"
)

#: Seconds between SIGINT and the end of the child (interpreter exit included).
DEADLINE = 1.0

CHILD = textwrap.dedent(
    """
    import signal, sys, time
    import numpy as np
    from cascade_routing import _core

    # Python's own Ctrl-C handler, even when the parent ignores SIGINT (a background job or a
    # nohup'd CI run hands SIG_IGN down, and Python then installs no handler at all).
    signal.signal(signal.SIGINT, signal.default_int_handler)

    kernel, n_threads = sys.argv[1], int(sys.argv[2])
    k = 30
    rng = np.random.default_rng(0)
    q, c = rng.uniform(size=k), rng.uniform(size=k)
    none = np.empty((0, 0))
    zeros = np.zeros(k, np.uint8)
    opts = (64, False, False, True)  # max_depth, force_order, prefixes_only, prune

    def call(n_rows):
        # Row 0 is long (2^30 candidates); any further rows are short (all but one model run).
        quality, cost = np.tile(q, (n_rows, 1)), np.tile(c, (n_rows, 1))
        ran = np.ones((n_rows, k), np.uint8)
        ran[0] = 0
        ran[1:, 0] = 0
        flags = np.zeros(n_rows, np.uint8)
        if kernel == "search":
            return _core.search(q, c, 0.0, 0, none, none, none, zeros, *opts, False, 8)
        if kernel == "search_batch":
            return _core.search_batch(quality, cost, np.zeros(n_rows), 0, none, none, none, ran,
                                      *opts, flags, 8, n_threads=n_threads)
        return _core.replay_two_phase(quality, quality, none, none, cost, cost, quality, cost,
                                      np.zeros(1), flags, none, False, 0, np.zeros(k), *opts, 8,
                                      False, n_threads=n_threads)

    small = (_core.search(q[:8], c[:8], 0.0, 0, none, none, none, zeros[:8], *opts, False, 8),
             _core.search_batch(np.tile(q[:8], (3, 1)), np.tile(c[:8], (3, 1)), np.zeros(3), 0,
                                none, none, none, np.zeros((3, 8), np.uint8), *opts,
                                np.zeros(3, np.uint8), 8, n_threads=n_threads)[0].tolist())
    print("started", flush=True)
    try:
        call(max(n_threads, 1) + 1 if kernel != "search" else 1)
    except KeyboardInterrupt:
        print("KeyboardInterrupt", flush=True)
    else:
        print("finished", flush=True)
        sys.exit(1)
    # The module is still usable, and the cancellation did not stick.
    again = (_core.search(q[:8], c[:8], 0.0, 0, none, none, none, zeros[:8], *opts, False, 8),
             _core.search_batch(np.tile(q[:8], (3, 1)), np.tile(c[:8], (3, 1)), np.zeros(3), 0,
                                none, none, none, np.zeros((3, 8), np.uint8), *opts,
                                np.zeros(3, np.uint8), 8, n_threads=n_threads)[0].tolist())
    assert str(again) == str(small), (again, small)
    print("usable", flush=True)
    """
)


def _package_root() -> str:
    import cascade_routing

    return str(Path(cascade_routing.__file__).resolve().parent.parent)


@pytest.mark.parametrize(
    ("kernel", "n_threads"),
    [("search", 1), ("search_batch", 1), ("search_batch", 2), ("replay_two_phase", 1)],
)
def test_sigint_stops_a_long_kernel(kernel: str, n_threads: int) -> None:
    require_backend("cpp")
    env = dict(os.environ, PYTHONPATH=_package_root())
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, kernel, str(n_threads)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        assert first == "started", first + proc.stderr.read() if proc.stderr else first
        time.sleep(0.3)  # well inside the call, which takes seconds
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out.split() == ["KeyboardInterrupt", "usable"], (out, err)
    assert proc.returncode == 0, err
    assert elapsed < DEADLINE, f"the child took {elapsed:.2f} s to stop after SIGINT"
