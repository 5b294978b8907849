#!/usr/bin/env bash
# Check python/cascade_routing/_core.pyi against the compiled module: mypy's stubtest (names,
# kinds, constants) and scripts/check_stub_signatures.py (parameters and results, which
# stubtest cannot read from pybind11 functions). Uses the cascade_routing that Python
# imports (the installed package in CI); if none has a compiled _core, the checkout's
# python/ directory (with an in-place build).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python}
if ! "$python" -c "import cascade_routing._core" 2>/dev/null; then
    export PYTHONPATH=$root/python${PYTHONPATH:+:$PYTHONPATH}
fi
"$python" -c "import cascade_routing._core as c; print('checking', c.__file__)"
"$python" -m mypy.stubtest cascade_routing._core --allowlist "$root/scripts/stubtest-allowlist.txt"
"$python" "$root/scripts/check_stub_signatures.py"
