"""The C ABI (cascade_routing/c_api.h): through cffi in ABI mode, from Numba's nopython mode,
and from a C program compiled against it, every decision identical to the pybind11 decider."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from _backends import require_backend, require_module
from cascade_routing import c_api
from cascade_routing.options import UncertaintyMode
from cascade_routing.strategies.decider import reachable_runsets
from strategies._decider_cases import _strategy

cffi = require_module("cffi", "test")

HERE = Path(__file__).resolve().parent


def _cdef() -> str:
    """The header's declarations as cffi reads them (no preprocessor lines)."""
    text = (c_api.include_dir() / "cascade_routing" / "c_api.h").read_text()
    keep = []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("#") or s in ('extern "C" {', "}"):
            continue
        keep.append(line.replace("CR_API ", ""))
    return "\n".join(keep)


@pytest.fixture(scope="module")
def lib() -> Any:
    require_backend("cpp")
    ffi = cffi.FFI()
    ffi.cdef(_cdef())
    return ffi, ffi.dlopen(str(c_api.library_path()))


def _states(rng: np.random.Generator, s: Any, n: int) -> tuple[Any, ...]:
    k = len(s.models)
    sets = reachable_runsets(k, s._depth(k), s.prefixes_only)
    ran = np.array([sets[i] for i in rng.integers(0, len(sets), n)], dtype=np.uint64)
    q = rng.uniform(0, 1, (n, k))
    c = rng.uniform(0, 1, (n, k))
    e = (rng.random(n) < 0.5).astype(np.uint8)
    return q, c, ran, e


def _create(ffi: Any, lib: Any, d: Any) -> Any:
    o = d.options
    runsets, factors = d._all_factors()
    out = ffi.new("cr_decider**")
    normals = np.ascontiguousarray(d.normals)
    st = lib.cr_decider_create(
        d.k, int(d.mode), ffi.from_buffer("double[]", normals), normals.shape[0],
        ffi.from_buffer("double[]", d.lambdas), ffi.from_buffer("double[]", d.lambdas_expensive),
        d.lambdas.shape[0], o.max_depth, int(o.force_order), int(o.prefixes_only), o.digits,
        o.quality_lower, o.quality_upper, ffi.from_buffer("uint64_t[]", runsets),
        ffi.from_buffer("double[]", np.ascontiguousarray(factors, dtype=np.float64)),
        runsets.shape[0], out,
    )  # fmt: skip
    assert st == 0, ffi.string(lib.cr_last_error())
    return ffi.gc(out[0], lib.cr_decider_free)


@pytest.mark.parametrize("kind", ["exact", "var", "cov"])
def test_cffi_decisions_equal_pybind11(lib: Any, kind: str, tmp_path: Path) -> None:
    ffi, C = lib
    assert C.cr_abi_version() == 1
    rng = np.random.default_rng(hash(kind) % 1000)
    total = 0
    for t in range(12):
        s = _strategy(rng, int(rng.integers(1, 12)), kind)
        d = s.decider()
        q, c, ran, e = _states(rng, s, 300)
        want = d.decide_batch(q, c, ran, e)
        handles = [_create(ffi, C, d)]
        path = tmp_path / f"d{t}.bin"
        d.save_c(path)
        h = ffi.new("cr_decider**")
        assert C.cr_decider_load(str(path).encode(), h) == 0, ffi.string(C.cr_last_error())
        handles.append(ffi.gc(h[0], C.cr_decider_free))
        for handle in handles:
            nm, mem, util = ffi.new("int64_t*"), ffi.new("uint64_t*"), ffi.new("double*")
            for i in range(q.shape[0]):
                st = C.cr_decide(
                    handle, ffi.from_buffer("double[]", q[i]), ffi.from_buffer("double[]", c[i]),
                    int(ran[i]), int(e[i]), nm, mem, util,
                )  # fmt: skip
                assert st == 0
                assert (nm[0], mem[0], util[0]) == (want[0][i], want[1][i], want[2][i])
            out = [np.empty(q.shape[0], dtype=t) for t in (np.int64, np.uint64, np.float64)]
            row = ffi.new("size_t*")
            st = C.cr_decide_batch(
                handle, q.shape[0], ffi.from_buffer("double[]", q), ffi.from_buffer("double[]", c),
                ffi.from_buffer("uint64_t[]", ran), ffi.from_buffer("uint8_t[]", e),
                ffi.from_buffer("int64_t[]", out[0]), ffi.from_buffer("uint64_t[]", out[1]),
                ffi.from_buffer("double[]", out[2]), row,
            )  # fmt: skip
            assert st == 0
            for got, w in zip(out, want):
                np.testing.assert_array_equal(got, w)
            total += q.shape[0]
    assert total == 12 * 300 * 2


def test_c_errors_are_status_codes(lib: Any, tmp_path: Path) -> None:
    ffi, C = lib
    s = _strategy(np.random.default_rng(1), 4, "cov")
    d = s.decider()
    h = _create(ffi, C, d)
    q = np.array([0.5, np.nan, 0.5, 0.5])
    c = np.ones(4)
    nm, mem, util = ffi.new("int64_t*"), ffi.new("uint64_t*"), ffi.new("double*")
    args = (ffi.from_buffer("double[]", c), 0, 0, nm, mem, util)
    assert C.cr_decide(h, ffi.from_buffer("double[]", q), *args) == 1  # CR_NON_FINITE
    assert b"NaN" in ffi.string(C.cr_last_error())
    ok = np.full(4, 0.5)
    assert C.cr_decide(h, ffi.from_buffer("double[]", ok), args[0], 1 << 5, 0, nm, mem, util) == 3
    assert C.cr_decide(ffi.NULL, ffi.from_buffer("double[]", ok), *args) == 5
    path = tmp_path / "d.bin"
    d.save_c(path)
    raw = bytearray(path.read_bytes())
    raw[200] ^= 0xFF
    path.write_bytes(bytes(raw))
    out = ffi.new("cr_decider**")
    assert C.cr_decider_load(str(path).encode(), out) == 7  # CR_BAD_FILE
    assert b"CRC-32" in ffi.string(C.cr_last_error()) and out[0] == ffi.NULL
    path.write_bytes(b"not a decider")
    assert C.cr_decider_load(str(path).encode(), out) == 7
    assert C.cr_decider_load(str(tmp_path / "missing").encode(), out) == 7


def test_numba_nopython_loop_calls_the_c_abi(lib: Any) -> None:
    numba = require_module("numba", "numba")
    from numba.core import cgutils, types
    from numba.extending import intrinsic

    ffi, C = lib
    s = _strategy(np.random.default_rng(7), 9, "cov")
    d = s.decider()
    q, c, ran, e = _states(np.random.default_rng(8), s, 500)
    want = d.decide_batch(q, c, ran, e)
    handle = _create(ffi, C, d)
    address = int(ffi.cast("uintptr_t", handle))
    # Numba types pointers to opaque structs as void*: declare the handle so.
    nffi = cffi.FFI()
    nffi.cdef(_cdef().replace("typedef struct cr_decider cr_decider;", "typedef void cr_decider;"))
    decide = nffi.dlopen(str(c_api.library_path())).cr_decide

    @intrinsic
    def as_pointer(typingctx: Any, value: Any) -> Any:  # the handle's address as a void*
        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            return builder.inttoptr(args[0], cgutils.voidptr_t)

        return types.voidptr(types.uintp), codegen

    @numba.njit(nogil=True)
    def loop(address, q, c, ran, e, nm, mem, util):  # type: ignore[no-untyped-def]
        h = as_pointer(address)
        for i in range(q.shape[0]):
            st = decide(
                h, nffi.from_buffer(q[i]), nffi.from_buffer(c[i]), ran[i], e[i],
                nffi.from_buffer(nm[i:]), nffi.from_buffer(mem[i:]), nffi.from_buffer(util[i:]),
            )  # fmt: skip
            if st != 0:
                return st
        return 0

    nm = np.empty(500, dtype=np.int64)
    mem = np.empty(500, dtype=np.uint64)
    util = np.empty(500, dtype=np.float64)
    assert loop(np.uintp(address), q, c, ran, e.astype(np.int32), nm, mem, util) == 0
    assert loop.nopython_signatures  # compiled in nopython mode
    np.testing.assert_array_equal(nm, want[0])
    np.testing.assert_array_equal(mem, want[1])
    np.testing.assert_array_equal(util, want[2])


def _compile(tmp_path: Path) -> Path:
    cc = shutil.which("cc")
    if cc is None:
        pytest.fail("no C compiler (cc) on PATH: the C ABI test needs one")
    exe = tmp_path / "decide"
    lib = c_api.library_path()
    subprocess.run(
        [cc, "-O2", "-std=c99", "-Wall", "-Werror", str(HERE / "c" / "decide.c"),
         f"-I{c_api.include_dir()}", f"-L{lib.parent}", "-lcascade_routing",
         f"-Wl,-rpath,{lib.parent}", "-o", str(exe)],
        check=True,
    )  # fmt: skip
    return exe


def _rows(path: Path, q: Any, c: Any, ran: Any, e: Any) -> None:
    lines = [f"{q.shape[0]} {q.shape[1]}"]
    for i in range(q.shape[0]):
        nums = " ".join(f"{v!r}" for v in [*q[i].tolist(), *c[i].tolist()])
        lines.append(f"{nums} {int(ran[i])} {int(e[i])}")
    path.write_text("\n".join(lines) + "\n")


def run_c_program(tmp_path: Path, kind: str, k: int, n: int, repeats: int = 0) -> Any:
    """Compile tests/c/decide.c, run it on n seeded states; (decider, states, stdout lines)."""
    require_backend("cpp")
    exe = _compile(tmp_path)
    rng = np.random.default_rng(k)
    s = _strategy(rng, k, kind)
    while len(s.models) != k or s.prefixes_only or s.max_depth not in (None, k):
        s = _strategy(rng, k, kind)
    d = s.decider()
    q, c, ran, e = _states(rng, s, n)
    d.save_c(tmp_path / "d.bin")
    _rows(tmp_path / "rows.txt", q, c, ran, e)
    args = [str(exe), str(tmp_path / "d.bin"), str(tmp_path / "rows.txt")]
    if repeats:
        args.append(str(repeats))
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout.splitlines()
    return d, (q, c, ran, e), out


@pytest.mark.parametrize("kind", ["exact", "cov"])
def test_c_program_decides_as_python(tmp_path: Path, kind: str) -> None:
    d, (q, c, ran, e), out = run_c_program(tmp_path, kind, 6, 400)
    assert d.mode == (UncertaintyMode.EXACT if kind == "exact" else UncertaintyMode.COVARIANCE)
    want = d.decide_batch(q, c, ran, e)
    assert len(out) == 400
    for i, line in enumerate(out):
        nm, mem, util = line.split()
        assert (int(nm), int(mem), float(util)) == (want[0][i], want[1][i], want[2][i])


def test_library_and_header_are_found() -> None:
    require_backend("cpp")
    assert c_api.library_path().is_file()
    assert (c_api.include_dir() / "cascade_routing" / "c_api.h").is_file()


# ------------------------------------------------------------------ fuzzing findings


def _create_raw(
    ffi: Any, C: Any, *, lam: float = 0.5, normal: float = 0.1, factor: float = 0.1
) -> tuple[int, Any, str]:
    """cr_decider_create for k = 2, full covariance, one run-set (the empty one), with one
    multiplier, normal and factor entry set as given; (status, handle, message)."""
    normals = np.full((4, 2), 0.1)
    normals[0, 0] = normal
    lams = np.array([lam])
    runsets = np.zeros(1, dtype=np.uint64)
    factors = np.array([[[0.1, 0.0], [0.05, 0.1]]])
    factors[0, 1, 0] = factor
    out = ffi.new("cr_decider**")
    st = C.cr_decider_create(
        2, 2, ffi.from_buffer("double[]", normals), 4, ffi.from_buffer("double[]", lams),
        ffi.from_buffer("double[]", lams), 1, 2, 0, 0, 8, -np.inf, np.inf,
        ffi.from_buffer("uint64_t[]", runsets), ffi.from_buffer("double[]", factors), 1, out,
    )  # fmt: skip
    message = ffi.string(C.cr_last_error()).decode()
    handle = ffi.gc(out[0], C.cr_decider_free) if st == 0 else None
    return st, handle, message


@pytest.mark.parametrize(
    ("field", "value"),
    [("lam", 1e200), ("normal", -1e200), ("factor", 1e308), ("factor", 2e100)],
)
def test_create_refuses_values_so_large_that_decisions_overflow(
    lib: Any, field: str, value: float
) -> None:
    """Fuzzing finding: a factor of 1e308 was accepted, and every decision at its run-set
    then failed with CR_NON_FINITE as if the quality or cost were not finite."""
    ffi, C = lib
    st, handle, message = _create_raw(ffi, C, **{field: value})
    assert st == 1 and handle is None  # CR_NON_FINITE
    name = {"lam": "lambdas", "normal": "normals", "factor": "factors"}[field]
    assert message.startswith(name) and "1e100" in message, message
    st, handle, _ = _create_raw(ffi, C, **{field: 1e100 if value > 0 else -1e100})
    assert st == 0 and handle is not None  # the bound itself is accepted


def test_load_refuses_a_file_with_a_huge_factor(lib: Any, tmp_path: Path) -> None:
    """Fuzzing finding: the same through a decider file whose CRC-32 was written again."""
    import struct
    import zlib

    ffi, C = lib
    d = _strategy(np.random.default_rng(3), 3, "cov").decider()
    path = tmp_path / "d.bin"
    d.save_c(path)
    raw = bytearray(path.read_bytes())
    # The first factor entry: after the multipliers, the normals and the masks.
    k, ns, steps = d.k, d.normals.shape[0], d.lambdas.shape[0]
    n_runsets = d._all_factors()[0].shape[0]
    at = 96 + 8 * (2 * steps + ns * k + n_runsets)
    struct.pack_into("<d", raw, at, 1e308)
    struct.pack_into("<I", raw, len(raw) - 4, zlib.crc32(bytes(raw[:-4])))
    path.write_bytes(bytes(raw))
    out = ffi.new("cr_decider**")
    assert C.cr_decider_load(str(path).encode(), out) == 7  # CR_BAD_FILE
    message = ffi.string(C.cr_last_error()).decode()
    assert "factors of run-set" in message and "1e100" in message, message
    assert out[0] == ffi.NULL


def test_a_decision_refuses_values_beyond_the_magnitude_bound(lib: Any) -> None:
    """Fuzzing finding: a finite quality of 1e308 was decided, with an infinite utility (the
    mean over samples overflowed). Qualities and costs beyond 1e100 are refused, as the
    strategy's checks refuse them (validation.MAX_MAGNITUDE)."""
    ffi, C = lib
    st, handle, _ = _create_raw(ffi, C)
    assert st == 0
    nm, mem, util = ffi.new("int64_t*"), ffi.new("uint64_t*"), ffi.new("double*")

    def decide(q: list[float], c: list[float]) -> int:
        qa, ca = np.array(q), np.array(c)
        return int(
            C.cr_decide(
                handle, ffi.from_buffer("double[]", qa), ffi.from_buffer("double[]", ca), 0, 0,
                nm, mem, util,
            )
        )  # fmt: skip

    for q, c in [
        ([1e308, 0.5], [0.5, 0.5]),
        ([-1e101, 0.5], [0.5, 0.5]),
        ([0.5] * 2, [2e100] * 2),
    ]:
        assert decide(q, c) == 1, (q, c)  # CR_NON_FINITE
        assert "beyond 1e100" in ffi.string(C.cr_last_error()).decode()
    assert decide([1e100, -1e100], [1e100, 0.0]) == 0
    assert np.isfinite(util[0])
