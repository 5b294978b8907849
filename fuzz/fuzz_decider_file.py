#!/usr/bin/env python3
"""Coverage-guided fuzzing of the C ABI's decider file reader: any file in, a status code out.

Every input becomes one file handed to ``cr_decider_load`` (cascade_routing/c_api.h, called
through cffi in ABI mode): either the input's raw bytes, or a valid file written by
``Decider.save_c`` (exact means, independent deviations or a full covariance; 1 to 4 models)
to which the input applies a few mutations: truncated or extended, bytes flipped, a header
field (version, header size, k, mode, samples, steps, depth, flags, digits, bounds, run-sets,
payload bytes) set to an edge value, an array entry set to NaN / inf / a huge or negative
value, a run-set mask duplicated or out of range; and then, most of the time, the CRC-32
written again so that the mutation reaches the checks behind it.

``cr_decider_load`` must return ``CR_OK`` with a decider, or ``CR_BAD_FILE`` with a message
and no decider; a decider it returns must then answer ``cr_decide`` and ``cr_decide_batch``
with a status code (never crash), decide as the decider in Python that wrote an unmutated
file, and be freed. Anything else (another status, a crash, a sanitizer report) is a finding.
The C library is not built with libFuzzer's instrumentation: as in fuzz_bindings.py, each
distinct outcome (the status and the words of the message) runs its own instrumented marker.

    python fuzz/fuzz_decider_file.py -max_total_time=60 NEW_DIR fuzz/corpus/decider_file
    scripts/fuzz.sh [SECONDS]        (bounded run of every target, as in CI)
"""

from __future__ import annotations

import struct
import sys
import tempfile
import types
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import atheris
import cffi
import numpy as np

from cascade_routing import c_api
from cascade_routing.options import SearchOptions, UncertaintyMode
from cascade_routing.strategies.decider import Decider, RunSetTable, reachable_runsets

CR_OK, CR_BAD_FILE = 0, 7
#: Statuses a decision may return: ok, non-finite input, bad run-set, missing run-set.
DECIDE_STATUSES = (0, 1, 3, 4)

# --------------------------------------------------------------------------- the library


def _header() -> Path:
    """The checkout's c_api.h (the library was built from it), else the installed one."""
    here = Path(__file__).resolve().parent.parent / "cpp" / "include"
    base = here if (here / "cascade_routing" / "c_api.h").is_file() else c_api.include_dir()
    return base / "cascade_routing" / "c_api.h"


def _cdef() -> str:
    """The header's declarations as cffi reads them (no preprocessor lines)."""
    text = _header().read_text()
    keep = []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("#") or s in ('extern "C" {', "}"):
            continue
        keep.append(line.replace("CR_API ", ""))
    return "\n".join(keep)


def _library() -> str:
    """The C ABI library: ``c_api.library_path()``; failing that (scripts/sanitize.sh copies the
    checkout's sources, without the library, ahead of the installed package), the library of
    another ``cascade_routing`` on the path."""
    try:
        return str(c_api.library_path())
    except FileNotFoundError:
        name = c_api._names()[0]
        for entry in sys.path:
            candidate = Path(entry or ".") / "cascade_routing" / "lib" / name
            if candidate.is_file():
                return str(candidate)
        raise


FFI = cffi.FFI()
FFI.cdef(_cdef())
LIB: Any = FFI.dlopen(_library())

# --------------------------------------------------------------------------- outcomes

_WORDS = (
    "CRDECIDE",
    "version",
    "CRC-32",
    "header",
    "sizes",
    "256 MiB",
    "cannot open",
    "k must",
    "mode",
    "normals",
    "lambdas",
    "max_depth",
    "digits",
    "bounds",
    "runsets",
    "distinct",
    "names a model",
    "not finite",
    "standard deviations",
    "memory",
)


def _marker(name: str) -> Callable[[], None]:
    # A distinct, instrumented code object per outcome: calling it is new coverage.
    code = compile("pass", f"<outcome {name}>", "exec")
    return atheris.instrument_func(types.FunctionType(code, {}, f"outcome_{name}"))


_MARKERS = {w: _marker(w.replace(" ", "_")) for w in _WORDS}
_MARKERS.update({f"status:{s}": _marker(f"status_{s}") for s in range(-1, 10)})
_MARKERS.update({f"decide:{s}": _marker(f"decide_{s}") for s in range(-1, 10)})
_MARKERS.update({f"mode:{m}": _marker(f"mode_{m}") for m in range(3)})


def _note(kind: str, status: int) -> None:
    _MARKERS.get(f"{kind}:{status}", _MARKERS[f"{kind}:-1"])()


# --------------------------------------------------------------------------- valid files

_DIR = tempfile.TemporaryDirectory(prefix="fuzz-decider-file-")
_FILE = Path(_DIR.name) / "decider.bin"


def _decider(k: int, mode: UncertaintyMode, prefixes: bool, seed: int) -> Decider:
    rng = np.random.default_rng(seed)
    depth = k if seed % 2 else max(1, k - 1)
    options = SearchOptions(max_depth=depth, force_order=prefixes, prefixes_only=prefixes)
    steps = int(rng.integers(1, k + 1))
    table = None
    if mode != UncertaintyMode.EXACT:
        masks = reachable_runsets(k, depth, prefixes)
        if mode == UncertaintyMode.COVARIANCE:
            factors = np.tril(rng.normal(0.0, 0.1, (len(masks), k, k)))
        else:
            factors = rng.uniform(0.0, 0.1, (len(masks), k))
        table = RunSetTable(
            mode,
            np.arange(k),
            np.array(masks, dtype=np.uint64),
            np.ascontiguousarray(factors),
            True,
        )
    return Decider(
        k,
        mode,
        rng.uniform(0.0, 1.0, steps),
        rng.uniform(0.0, 1.0, steps),
        options,
        n_samples=8,
        sample_seed=seed,
        table=table,
    )


def _valid() -> list[tuple[Decider, bytes]]:
    out = []
    for i, (k, mode, prefixes) in enumerate(
        [
            (1, UncertaintyMode.EXACT, False),
            (3, UncertaintyMode.EXACT, True),
            (2, UncertaintyMode.INDEPENDENT, False),
            (4, UncertaintyMode.INDEPENDENT, True),
            (3, UncertaintyMode.COVARIANCE, False),
            (4, UncertaintyMode.COVARIANCE, True),
        ]
    ):
        d = _decider(k, mode, prefixes, i)
        d.save_c(_FILE)
        out.append((d, _FILE.read_bytes()))
    return out


VALID = _valid()

#: Header fields: (offset, struct format) of docs/decider.md §6.
_FIELDS = (
    (8, "<I"),  # format version
    (12, "<I"),  # header size
    (16, "<i"),  # k
    (20, "<i"),  # mode
    (24, "<Q"),  # samples
    (32, "<Q"),  # steps
    (40, "<q"),  # max_depth
    (48, "<I"),  # flags
    (52, "<i"),  # digits
    (56, "<d"),  # quality lower
    (64, "<d"),  # quality upper
    (72, "<Q"),  # run-sets
    (80, "<Q"),  # payload bytes
    (88, "<Q"),  # reserved
)
_INTS = (0, 1, 2, 3, 4, 7, 8, 15, 16, 17, 63, 64, 65, 96, 128, 2**26, 2**26 + 1, 2**31 - 1)
_FLOATS = (np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 1e308, -1e308, 5e-324)


def _field_value(fdp: atheris.FuzzedDataProvider, fmt: str) -> Any:
    if fmt == "<d":
        return fdp.PickValueInList(list(_FLOATS))
    size = struct.calcsize(fmt)
    signed = fmt[1].islower()
    bits = 8 * size
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    choice = fdp.ConsumeIntInRange(0, 3)
    if choice == 0:
        v = fdp.PickValueInList(list(_INTS))
    elif choice == 1:
        v = fdp.PickValueInList([lo, hi, -1, (1 << 63) - 1, 1 << 32])
    else:
        v = fdp.ConsumeIntInRange(0, 200)
    return min(max(v, lo), hi)


def _mutate(fdp: atheris.FuzzedDataProvider, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(fdp.ConsumeIntInRange(1, 3)):
        op = fdp.ConsumeIntInRange(0, 6)
        if op == 0:  # truncate
            del data[fdp.ConsumeIntInRange(0, len(data)) :]
        elif op == 1:  # extend
            data += fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 64))
        elif op == 2 and data:  # flip bytes
            for _ in range(fdp.ConsumeIntInRange(1, 4)):
                data[fdp.ConsumeIntInRange(0, len(data) - 1)] ^= fdp.ConsumeIntInRange(1, 255)
        elif op in (3, 4):  # a header field
            offset, fmt = fdp.PickValueInList(list(_FIELDS))
            if offset + struct.calcsize(fmt) <= len(data):
                struct.pack_into(fmt, data, offset, _field_value(fdp, fmt))
        elif op == 5 and len(data) >= 96 + 12:  # a payload entry (aligned to 8 bytes)
            slot = fdp.ConsumeIntInRange(0, (len(data) - 96 - 4) // 8 - 1)
            if fdp.ConsumeBool():
                struct.pack_into("<d", data, 96 + 8 * slot, fdp.PickValueInList(list(_FLOATS)))
            else:
                value = fdp.PickValueInList([0, 1, 2, 3, 2**63, 2**64 - 1, 1 << 16, 1 << 4])
                struct.pack_into("<Q", data, 96 + 8 * slot, value)
        elif op == 6 and len(data) >= 96:  # the payload size made to match the file again
            struct.pack_into("<Q", data, 80, max(len(data) - 96 - 4, 0))
    if len(data) >= 4 and fdp.ConsumeIntInRange(0, 3) != 0:  # the CRC written again
        struct.pack_into("<I", data, len(data) - 4, zlib.crc32(bytes(data[:-4])))
    return bytes(data)


# --------------------------------------------------------------------------- the target


def _work(handle: Any, raw: bytes) -> float:
    """Worst-case candidates x samples of one decision of a loaded decider (from its header)."""
    k, mode, ns = struct.unpack_from("<iiQ", raw, 16)
    (depth,) = struct.unpack_from("<q", raw, 40)
    (flags,) = struct.unpack_from("<I", raw, 48)
    depth = min(max(depth, 1), k)
    if flags & 2:
        candidates = float(depth)
    else:
        candidates, binom = 0.0, 1.0
        for i in range(1, depth + 1):
            binom = binom * (k - i + 1) / i
            candidates += binom
    return candidates * max(ns if mode else 1, 1)


def _decide(fdp: atheris.FuzzedDataProvider, handle: Any, k: int) -> None:
    """Decisions on a decider the reader accepted: status codes only."""
    q = np.array([fdp.ConsumeProbability() for _ in range(k)], dtype=np.float64)
    c = np.array([fdp.ConsumeProbability() for _ in range(k)], dtype=np.float64)
    if fdp.ConsumeIntInRange(0, 7) == 7:  # (an exhausted input reads 0: finite means)
        q[fdp.ConsumeIntInRange(0, k - 1)] = fdp.PickValueInList(list(_FLOATS))
    ran = fdp.ConsumeIntInRange(0, (1 << min(k + 1, 64)) - 1) if fdp.ConsumeBool() else 0
    nm, mem, util = FFI.new("int64_t*"), FFI.new("uint64_t*"), FFI.new("double*")
    st = LIB.cr_decide(
        handle,
        FFI.from_buffer("double[]", q),
        FFI.from_buffer("double[]", c),
        ran,
        int(fdp.ConsumeBool()),
        nm,
        mem,
        util,
    )
    _note("decide", st)
    assert st in DECIDE_STATUSES, (st, FFI.string(LIB.cr_last_error()))
    if st == CR_OK:
        assert -1 <= nm[0] < k and mem[0] & ran == ran, (nm[0], mem[0], ran)
    n = 3
    qb, cb = np.tile(q, (n, 1)), np.tile(c, (n, 1))
    rb = np.array([0, ran, ran], dtype=np.uint64)
    out = (np.empty(n, np.int64), np.empty(n, np.uint64), np.empty(n, np.float64))
    row = FFI.new("size_t*")
    st = LIB.cr_decide_batch(
        handle,
        n,
        FFI.from_buffer("double[]", qb),
        FFI.from_buffer("double[]", cb),
        FFI.from_buffer("uint64_t[]", rb),
        FFI.NULL,
        FFI.from_buffer("int64_t[]", out[0]),
        FFI.from_buffer("uint64_t[]", out[1]),
        FFI.from_buffer("double[]", out[2]),
        row,
    )
    _note("decide", st)
    assert st in DECIDE_STATUSES, (st, FFI.string(LIB.cr_last_error()))
    assert st == CR_OK or row[0] < n, row[0]


def one_input(data: bytes) -> None:
    """The fuzz target: one decider file built from ``data``."""
    fdp = atheris.FuzzedDataProvider(data)
    which = fdp.ConsumeIntInRange(0, len(VALID))
    if which == len(VALID):
        raw = fdp.ConsumeBytes(fdp.remaining_bytes())
        mutated = True
    else:
        decider, raw = VALID[which]
        mutated = fdp.ConsumeIntInRange(0, 7) != 0
        if mutated:
            raw = _mutate(fdp, raw)
    _FILE.write_bytes(raw)
    out = FFI.new("cr_decider**")
    st = LIB.cr_decider_load(str(_FILE).encode(), out)
    _note("status", st)
    message = FFI.string(LIB.cr_last_error()).decode("utf-8", "replace")
    if st != CR_OK:
        assert st == CR_BAD_FILE and out[0] == FFI.NULL and message, (st, message)
        for word, mark in _MARKERS.items():
            if word in message:
                mark()
        return
    handle = out[0]
    try:
        assert handle != FFI.NULL
        k = LIB.cr_decider_n_models(handle)
        assert 1 <= k <= 64, k
        (mode,) = struct.unpack_from("<i", raw, 20)
        _MARKERS[f"mode:{mode}"]()
        if not mutated:  # the file decides as the decider that wrote it
            q = np.linspace(0.2, 0.8, k)
            nm, mem, util = FFI.new("int64_t*"), FFI.new("uint64_t*"), FFI.new("double*")
            st = LIB.cr_decide(
                handle,
                FFI.from_buffer("double[]", q),
                FFI.from_buffer("double[]", q[::-1].copy() * 0.1),
                0,
                0,
                nm,
                mem,
                util,
            )
            assert st == CR_OK, FFI.string(LIB.cr_last_error())
            want = decider.decide(q, q[::-1].copy() * 0.1, 0, False)
            assert (nm[0], mem[0], util[0]) == want, ((nm[0], mem[0], util[0]), want)
        # A header edited into a valid but exponential search (k = 64, no depth limit) is a
        # legal decider: decide only where one decision is bounded.
        if _work(handle, raw) <= 1 << 16:
            _decide(fdp, handle, k)
    finally:
        LIB.cr_decider_free(handle)


one_input = atheris.instrument_func(one_input)
_mutate = atheris.instrument_func(_mutate)
_decide = atheris.instrument_func(_decide)


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
