#!/usr/bin/env bash
# Fuzz for a bounded time with atheris: the compiled bindings and the prepared decider
# (fuzz/fuzz_bindings.py), the policy loader with its run-set table (fuzz/fuzz_policy.py) and
# the C ABI's decider file reader (fuzz/fuzz_decider_file.py), 2 x SECONDS in all, split evenly
# between the three targets (as long as the two targets of before, SECONDS each, took).
#
#   scripts/fuzz.sh [SECONDS] [--sanitized]
#
# SECONDS defaults to 60. Each target's committed corpus (fuzz/corpus/<target>) is replayed
# first and read, never written: new inputs go to a temporary directory. A finding (an exception other
# than TypeError / ValueError, a crash, or with --sanitized an ASan / UBSan report) exits
# non-zero and leaves the reproducer in fuzz/findings/. --sanitized fuzzes the module that
# scripts/sanitize.sh built (build/asan), and its C ABI library; otherwise the module and the
# library the checkout imports (python/cascade_routing/_core*.so and lib/, or the installed
# package).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python}
seconds=60
# A fixed seed makes a CI run repeatable; explore with FUZZ_SEED=0 (random) or other seeds.
seed=${FUZZ_SEED:-1}
sanitized=0
for arg in "$@"; do
    case $arg in
        --sanitized) sanitized=1 ;;
        ''|*[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS] [--sanitized]" >&2; exit 2 ;;
        *) seconds=$arg ;;
    esac
done

"$python" -c "import atheris" 2>/dev/null || {
    echo "fuzz.sh: atheris is not installed in $python (pip install atheris)" >&2
    exit 2
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The package Python imports (the installed one in CI); if none has a compiled _core, the
# checkout's python/ directory (with an in-place build).
if ! "$python" -c "import cascade_routing._core" 2>/dev/null; then
    export PYTHONPATH=$root/python${PYTHONPATH:+:$PYTHONPATH}
fi
if [ "$sanitized" = 1 ]; then
    build=${CASCADE_ROUTING_ASAN_BUILD:-$root/build/asan}
    so=$(ls "$build"/_core*.so 2>/dev/null) || {
        echo "fuzz.sh: no sanitized module in $build; run scripts/sanitize.sh first" >&2
        exit 2
    }
    cp -r "$root/python/cascade_routing" "$work/"
    rm -f "$work"/cascade_routing/_core*.so
    cp "$so" "$work/cascade_routing/"
    export PYTHONPATH=$work
    clib=$(ls "$build"/libcascade_routing.so 2>/dev/null) || {
        echo "fuzz.sh: no C ABI library in $build; run scripts/sanitize.sh first" >&2
        exit 2
    }
    export CASCADE_ROUTING_C_LIBRARY=$clib
    cxx=${CXX:-c++}
    # UBSan's runtime too: the C ABI library links the sanitized core but not the runtimes.
    export LD_PRELOAD="$("$cxx" -print-file-name=libasan.so) $("$cxx" -print-file-name=libubsan.so) $("$cxx" -print-file-name=libstdc++.so)"
    export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1
    export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
fi

mkdir -p "$root/fuzz/findings"
cd "$work"
targets=(bindings policy decider_file)
each=$(( seconds * 2 / ${#targets[@]} ))
[ "$each" -ge 1 ] || each=1
for target in "${targets[@]}"; do
    echo "== fuzz_$target.py for ${each}s"
    mkdir -p "$work/new-$target"
    "$python" "$root/fuzz/fuzz_$target.py" -max_total_time="$each" -timeout=10 -seed="$seed" \
        -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$root/fuzz/findings/" \
        "$work/new-$target" "$root/fuzz/corpus/$target"
done
