#!/usr/bin/env bash
# Build _core with AddressSanitizer + UndefinedBehaviorSanitizer and run the core, binding,
# thread-stress and Ctrl-C tests against it. Exits non-zero on any sanitizer report.
#
#   scripts/sanitize.sh [extra pytest arguments]
#
# Needs: python with numpy, pytest, hypothesis, pybind11, cmake and ninja; GCC or Clang.
# The build directory (default build/asan, override with CASCADE_ROUTING_ASAN_BUILD) is kept
# between runs, so a rerun only recompiles what changed.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${CASCADE_ROUTING_ASAN_BUILD:-$root/build/asan}
python=${PYTHON:-python}
cxx=${CXX:-c++}

pybind11_dir=$("$python" -m pybind11 --cmakedir) || {
    echo "sanitize.sh: pybind11 is not installed in $python (pip install pybind11)" >&2
    exit 2
}
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
    -DCMAKE_CXX_COMPILER="$(command -v "$cxx")" -DCASCADE_ROUTING_SANITIZE=ON \
    -DPython_EXECUTABLE="$(command -v "$python")" -Dpybind11_DIR="$pybind11_dir" >/dev/null
cmake --build "$build" --parallel

so=$(ls "$build"/_core*.so)
# The module must really be instrumented, or a clean run would prove nothing.
symbols=$(nm -D "$so")
for sym in __asan_init __ubsan_handle_; do
    if ! grep -q "$sym" <<<"$symbols"; then
        echo "sanitize.sh: $so has no $sym symbol: not built with the sanitizers" >&2
        exit 2
    fi
done

# A throw-away package: the sources of this checkout plus the sanitized module, first on the
# path (before any installed cascade_routing).
pkg=$(mktemp -d)
trap 'rm -rf "$pkg"' EXIT
cp -r "$root/python/cascade_routing" "$pkg/"
rm -f "$pkg"/cascade_routing/_core*.so "$pkg"/cascade_routing/_core*.pyd
cp "$so" "$pkg/cascade_routing/"
find "$pkg" -name __pycache__ -prune -exec rm -rf {} +

# Python is not instrumented: preload the ASan runtime. CPython keeps memory until exit by
# design, so leak detection is off; every other report aborts the process.
# libstdc++ too: Python does not link it, and ASan's __cxa_throw interceptor must find it at
# start-up (or the first C++ exception aborts).
libasan=$("$cxx" -print-file-name=libasan.so)
libstdcxx=$("$cxx" -print-file-name=libstdc++.so)
export LD_PRELOAD="$libasan $libstdcxx"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1:strict_init_order=1
export UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1
export PYTHONPATH=$pkg
export CASCADE_ROUTING_STRESS_ROUNDS=${CASCADE_ROUTING_STRESS_ROUNDS:-24}
export CASCADE_ROUTING_BACKEND=cpp

# The sanitizer must be live: a use after free in this process has to abort it.
if ASAN_OPTIONS=detect_leaks=0:exitcode=3 "$python" - 2>/dev/null <<'PY'; then
import ctypes
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
p = libc.malloc(16)
libc.free(p)
dst = ctypes.create_string_buffer(16)
ctypes.memmove(dst, p, 16)
PY
    echo "sanitize.sh: AddressSanitizer did not catch a use after free (is $libasan loaded?)" >&2
    exit 2
fi

cd "$root"
"$python" -c "import cascade_routing._core as c; print('sanitized core:', c.__file__)"
# Only the C++ backend: Numba's JIT under ASan is slow and not what is being checked.
exec "$python" -m pytest -q -p no:cacheprovider --capture=sys -k "not numba and not numpy" \
    tests/test_core_binding.py tests/test_search.py tests/test_threads.py \
    tests/test_interrupt.py tests/test_fuzz_corpus.py tests/strategies/test_decider.py "$@"
