"""Where the C ABI is installed: the shared library and its header (docs/decider.md §5).

The wheel ships ``cascade_routing/lib/`` (``libcascade_routing.so``, ``.dylib`` or
``cascade_routing.dll``) and ``cascade_routing/include/cascade_routing/c_api.h``. A service in
C, C++, Rust or Go links the library and includes the header; Python code reaches the same
functions through cffi (``ffi.dlopen(library_path())``), from Numba's nopython mode too.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
#: Overrides :func:`library_path` (a library built elsewhere, e.g. a development build).
ENV_VAR = "CASCADE_ROUTING_C_LIBRARY"


def _names() -> tuple[str, ...]:
    if sys.platform == "win32":
        return ("cascade_routing.dll",)
    if sys.platform == "darwin":
        return ("libcascade_routing.dylib",)
    return ("libcascade_routing.so",)


def library_path() -> Path:
    """Path of the C ABI's shared library (``$CASCADE_ROUTING_C_LIBRARY`` if set).

    Raises FileNotFoundError when the package was installed without it (a checkout without
    a build: build it with CMake and copy it to ``cascade_routing/lib/``).
    """
    forced = os.environ.get(ENV_VAR, "").strip()
    if forced:
        path = Path(forced)
        if not path.is_file():
            raise FileNotFoundError(f"{ENV_VAR}={forced!r} is not a file")
        return path
    lib = Path(__file__).parent / "lib"
    for name in _names():
        if (lib / name).is_file():
            return lib / name
    raise FileNotFoundError(
        f"the C ABI library ({_names()[0]}) is not in {lib}; install the package with pip "
        "(the wheel ships it), or build the cascade_routing_c target with CMake and copy it "
        f"there (or set {ENV_VAR})"
    )


def include_dir() -> Path:
    """The directory to add to the include path (``#include <cascade_routing/c_api.h>``)."""
    for base in (Path(__file__).parent / "include", _HERE.parent.parent / "cpp" / "include"):
        if (base / "cascade_routing" / "c_api.h").is_file():
            return base
    raise FileNotFoundError(
        "cascade_routing/c_api.h is not installed with this package; reinstall it with pip"
    )


__all__ = ["ENV_VAR", "include_dir", "library_path"]
