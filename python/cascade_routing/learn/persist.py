"""Save and load fitted learned estimators in a safe, versioned format.

``save_estimator(est, "quality")`` writes ``quality.json`` (format name and version, the
class, the package version, the hyper-parameters and small fitted values) and
``quality.npz`` (the arrays, read back with ``allow_pickle=False``). Nothing is ever
unpickled: loading a file runs no code from it. The JSON records the SHA-256 of the ``.npz``,
so a mismatched pair is refused. Cross-fitting state (:meth:`LearnedQuality.cross_fitted`) is
not saved: a loaded estimator serves new queries.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from .cost import PriceTableCost
from .quality import LearnedQuality

__all__ = ["FORMAT", "FORMAT_VERSION", "load_estimator", "save_estimator"]

FORMAT = "cascade-routing-learned-estimator"
FORMAT_VERSION = 2  # 2: confidence CDF knots instead of mean and sd
_CLASSES: dict[str, Any] = {"LearnedQuality": LearnedQuality, "PriceTableCost": PriceTableCost}


def _paths(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix in (".json", ".npz"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".json"), p.with_name(p.name + ".npz")


def save_estimator(estimator: LearnedQuality | PriceTableCost, path: str | Path) -> Path:
    """Write a fitted estimator to ``<path>.json`` + ``<path>.npz``; returns the JSON path."""
    name = type(estimator).__name__
    if name not in _CLASSES or not isinstance(estimator, _CLASSES[name]):
        raise TypeError(
            f"estimator must be a LearnedQuality or PriceTableCost, got {type(estimator).__name__}"
        )
    params, arrays = estimator._state()
    buf = io.BytesIO()
    np.savez(buf, **{key: np.asarray(value) for key, value in arrays.items()})  # type: ignore[arg-type]
    blob = buf.getvalue()
    json_path, npz_path = _paths(path)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "class": name,
        "package_version": __version__,
        "arrays": npz_path.name,
        "arrays_sha256": hashlib.sha256(blob).hexdigest(),
        "params": params,
    }
    npz_path.write_bytes(blob)
    json_path.write_text(json.dumps(meta, indent=1, allow_nan=False))
    return json_path


def load_estimator(path: str | Path) -> LearnedQuality | PriceTableCost:
    """Read an estimator written by :func:`save_estimator` (``<path>.json`` or ``<path>``)."""
    json_path, npz_path = _paths(path)
    try:
        meta = json.loads(json_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{json_path} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{json_path} is not a saved cascade-routing learned estimator")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{json_path} has format version {version!r}; this package reads version "
            f"{FORMAT_VERSION} (saved by cascade-routing {meta.get('package_version')})"
        )
    cls = _CLASSES.get(meta.get("class", ""))
    if cls is None:
        raise ValueError(f"{json_path}: unknown estimator class {meta.get('class')!r}")
    blob = npz_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != meta.get("arrays_sha256"):
        raise ValueError(f"{npz_path} does not match {json_path} (checksum differs)")
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    try:
        return cls._from_state(meta["params"], arrays)  # type: ignore[no-any-return]
    except KeyError as exc:
        raise ValueError(f"{json_path}: saved estimator lacks {exc}") from None
