"""The policy file: writing a fitted strategy as versioned JSON and loading it back strictly.

The format and every rule the loader enforces are in docs/policy-format.md. The loader never
trusts the file: it refuses files over :data:`MAX_POLICY_BYTES` before reading them, parses
with NaN, infinities and duplicate keys rejected, checks every field's exact JSON type, length
and range, binds the policy to the caller's models, and lets only ``ValueError`` out for a bad
file (``FileNotFoundError`` for a missing one). Any strategy class is rebuilt the same way, as
``cls(quality_estimator, cost_estimator, models, order=..., **settings)``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._version import __version__
from ..options import UncertaintyMode
from ..validation import (
    MAX_MAGNITUDE,
    all_within,
    check_bounds,
    check_model_names,
    check_number,
    is_int,
)

if TYPE_CHECKING:
    from .base import Strategy

SCHEMA_VERSION = 1
POLICY_FORMAT = "cascade-routing-policy"
#: Largest policy file :func:`load_policy` reads (32 MiB: a policy for 64 models with
#: per-step multipliers is about 10 KB, its run-set table at most 16 MiB of factors, 4/3 of
#: that in base64). Larger files are refused before they are read.
MAX_POLICY_BYTES = 32 << 20

#: The fields of a policy file (docs/policy-format.md §3): all required, no others.
FIELDS = (
    "format",
    "schema_version",
    "package_version",
    "strategy",
    "models",
    "order",
    "settings",
    "lambdas",
    "lambdas_expensive",
    "gamma",
    "fit_info",
)
#: Settings added after the first files of schema 1 were written: they may be absent (the
#: constructor's default applies).
OPTIONAL_SETTINGS = frozenset({"max_work"})
#: Top-level fields added after the first files of schema 1: they may be absent.
OPTIONAL_FIELDS = ("runset_table",)
#: The fields of ``runset_table`` (docs/policy-format.md §6).
TABLE_FIELDS = ("mode", "n_models", "order", "runsets", "factors", "complete", "sha256")
_TABLE_MODES = {
    "independent": UncertaintyMode.INDEPENDENT,
    "covariance": UncertaintyMode.COVARIANCE,
}

#: Strategy classes by name, filled in as they are defined (``Strategy.__init_subclass__``).
STRATEGIES: dict[str, type[Strategy]] = {}


def register(cls: type[Strategy]) -> None:
    """Make ``cls`` loadable under its class name."""
    STRATEGIES[cls.__name__] = cls


# --------------------------------------------------------------------------- writing


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _table_digest(
    mode: str, models: Sequence[str], order: Sequence[str], runsets: bytes, factors: bytes
) -> str:
    """SHA-256 of a run-set table bound to its models and order (docs/policy-format.md §6)."""
    h = hashlib.sha256()
    head = json.dumps([mode, list(models), list(order)], separators=(",", ":"))
    for part in (head.encode(), runsets, factors):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def _factor_values(factors: np.ndarray, mode: UncertaintyMode) -> np.ndarray:
    """What the file stores of the factors: the lower triangles, or the deviations."""
    if mode == UncertaintyMode.COVARIANCE:
        rows, cols = np.tril_indices(factors.shape[1])
        return np.ascontiguousarray(factors[:, rows, cols])
    return np.ascontiguousarray(factors)


def table_to_dict(strategy: Strategy) -> dict[str, Any] | None:
    """The run-set table of the prepared decider as plain data, or ``None``."""
    t = strategy.runset_table_
    if t is None:
        return None
    mode = "covariance" if t.mode == UncertaintyMode.COVARIANCE else "independent"
    order = [strategy.models[i] for i in t.order]
    runsets = t.runsets.astype("<u8").tobytes()
    values = _factor_values(t.factors, t.mode).astype("<f8").tobytes()
    return {
        "mode": mode,
        "n_models": len(strategy.models),
        "order": order,
        "runsets": [int(m) for m in t.runsets],
        "factors": base64.b64encode(values).decode("ascii"),
        "complete": bool(t.complete),
        "sha256": _table_digest(mode, strategy.models, order, runsets, values),
    }


def to_dict(strategy: Strategy) -> dict[str, Any]:
    """The policy of a fitted strategy as plain data (docs/policy-format.md §3)."""
    lam, alt = strategy._check_fitted()
    table = table_to_dict(strategy)
    extra = {} if table is None else {"runset_table": table}
    return {
        "format": POLICY_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "package_version": __version__,
        "strategy": type(strategy).__name__,
        "models": list(strategy.models),
        "order": list(strategy.model_order),
        "settings": strategy.settings(),
        "lambdas": lam.tolist(),
        "lambdas_expensive": alt.tolist(),
        "gamma": strategy.gamma_,
        "fit_info": _jsonable(strategy.fit_info_),
        **extra,
    }


def save(strategy: Strategy, path: str | Path) -> None:
    """Write the policy atomically: ``<path>.tmp`` first, then renamed over ``path``."""
    data = to_dict(strategy)
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=False))
    tmp.replace(target)


# --------------------------------------------------------------------------- reading


class _Corrupt(ValueError):
    """A field of the file breaks a rule (the message names the field)."""


def _reject_constant(token: str) -> Any:
    raise _Corrupt(f"the JSON token {token} is not allowed (numbers must be finite)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Corrupt(f"the number {text[:40]} is too large for a float")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Corrupt(f"the key {key[:40]!r} appears twice in one object")
        out[key] = value
    return out


def _read(p: Path) -> Any:
    size = os.stat(p).st_size  # FileNotFoundError stays as it is
    if size > MAX_POLICY_BYTES:
        raise ValueError(
            f"{p} is {size:,} bytes; a policy file is at most {MAX_POLICY_BYTES:,} bytes "
            "(MAX_POLICY_BYTES), so this is not one"
        )
    try:
        with open(p, "rb") as f:
            raw = f.read(MAX_POLICY_BYTES + 1)  # the file may have grown since stat
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ValueError(f"{p} is not a readable policy file: {exc}") from exc
    if len(raw) > MAX_POLICY_BYTES:
        raise ValueError(f"{p} is over {MAX_POLICY_BYTES:,} bytes; not a policy file")
    try:
        return json.loads(
            raw.decode("utf-8"),
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            object_pairs_hook=_no_duplicates,
        )
    except RecursionError:
        raise ValueError(f"{p} is not a readable policy file: nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{p} is not a readable policy file: {exc}") from None


def _type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }.get(type(value), "null")


def _want(ok: bool, field: str, what: str, value: Any) -> None:
    if not ok:
        raise _Corrupt(f"{field} must be {what}, got {_type_name(value)}")


def _json_int(value: Any, field: str, low: int | None = None, high: int | None = None) -> int:
    _want(type(value) is int, field, "an integer", value)
    if (low is not None and value < low) or (high is not None and value > high):
        rng = f">= {low}" if high is None else f"between {low} and {high}"
        raise _Corrupt(f"{field} must be {rng}, got {value}")
    return int(value)


def _json_number(value: Any, field: str) -> float:
    _want(type(value) in (int, float), field, "a number", value)
    return check_number(value, field)


def _json_strings(value: Any, field: str) -> list[str]:
    _want(type(value) is list, field, "an array of model names", value)
    for i, v in enumerate(value):
        _want(type(v) is str, f"{field}[{i}]", "a string", v)
    return list(value)


def _setting_bounds(value: Any, field: str) -> tuple[float, float] | None:
    if value is None:
        return None
    _want(type(value) is list, field, "null or an array [lower, upper]", value)
    if len(value) != 2:
        raise _Corrupt(f"{field} must have two entries [lower, upper], got {len(value)}")
    sides = []
    for side, v, inf in zip(("lower", "upper"), value, (-math.inf, math.inf)):
        sides.append(inf if v is None else _json_number(v, f"{field} {side}"))
    lower, upper = check_bounds(tuple(sides), field)
    return lower, upper


def _setting(name: str, value: Any) -> Any:
    """The JSON value of one setting, with its exact type checked (the range is the
    constructor's to check)."""
    field = f"settings.{name}"
    if name in ("force_order", "prefixes_only"):
        _want(type(value) is bool, field, "true or false", value)
        return value
    if name in ("max_depth", "rounding_digits"):
        return None if value is None else _json_int(value, field)
    if name in ("n_samples", "sample_seed", "seed", "max_work"):
        return _json_int(value, field)
    if name == "quality_bounds":
        return _setting_bounds(value, field)
    raise _Corrupt(f"{field} is not a setting this package knows")


def _lambdas(value: Any, field: str) -> list[float]:
    _want(type(value) is list, field, "an array of numbers", value)
    if not value:
        raise _Corrupt(f"{field} must hold at least one multiplier")
    return [_json_number(v, f"{field}[{i}]") for i, v in enumerate(value[:65])]


def _bound_models(saved: tuple[str, ...], models: Any, estimators: tuple[Any, Any]) -> None:
    """Refuse a policy for other models than the caller's (docs/policy-format.md §8.11)."""
    if models is not None:
        given = check_model_names(models)
        if given != saved:
            raise ValueError(f"was fitted for models {list(saved)}, not {list(given)}")
    for role, est in zip(("quality_estimator", "cost_estimator"), estimators):
        names = getattr(est, "models", None)
        if names is not None and models is None:
            try:
                known = tuple(names)
            except TypeError:
                continue
            if known != saved:
                raise ValueError(
                    f"was fitted for models {list(saved)}, but the {role} is for "
                    f"{list(known)}; pass the estimators of those models, in that order"
                )
        n = getattr(est, "n_models", None)
        if is_int(n) and n != len(saved):
            raise ValueError(
                f"was fitted for {len(saved)} models, but the {role} has {n}; pass the "
                "estimators of the policy's models"
            )


def _check_content(
    data: Any, expected: type[Strategy] | None
) -> tuple[type[Strategy], dict[str, Any]]:
    """The strategy class and constructor arguments of a parsed policy (ValueError if bad)."""
    if not isinstance(data, dict) or data.get("format") != POLICY_FORMAT:
        raise ValueError("is not a cascade-routing policy (missing format marker)")
    version = data.get("schema_version")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise ValueError(
            f"has policy schema version {version!r}; this cascade-routing reads version "
            f"{SCHEMA_VERSION}. Refit and save the policy with this version."
        )
    missing = [f for f in FIELDS if f not in data]
    unknown = [str(f)[:40] for f in data if f not in FIELDS and f not in OPTIONAL_FIELDS]
    if missing or unknown:
        raise _Corrupt(f"has missing fields {missing} or unknown fields {unknown[:5]}")
    version_text = data["package_version"]
    _want(type(version_text) is str, "package_version", "a string", version_text)
    name = data["strategy"]
    _want(type(name) is str, "strategy", "a string", name)
    if name not in STRATEGIES:
        raise _Corrupt(f"strategy {name[:40]!r} is not one of {sorted(STRATEGIES)}")
    cls = STRATEGIES[name]
    if expected is not None and cls is not expected:
        raise ValueError(f"holds a {cls.__name__} policy, not a {expected.__name__}")
    models = check_model_names(_json_strings(data["models"], "models"))
    order = _json_strings(data["order"], "order")
    if sorted(order) != sorted(models):
        raise _Corrupt("order must list every model of models exactly once")
    settings = data["settings"]
    _want(type(settings) is dict, "settings", "an object", settings)
    known = cls.setting_names()
    extra = [str(s)[:40] for s in settings if s not in known]
    absent = [s for s in known if s not in settings and s not in OPTIONAL_SETTINGS]
    if extra or absent:
        raise _Corrupt(
            f"settings of a {name} must have the keys {list(known)}; unknown {extra[:5]}, "
            f"missing {absent}"
        )
    kwargs = {key: _setting(key, value) for key, value in settings.items()}
    lam = _lambdas(data["lambdas"], "lambdas")
    lam_e = _lambdas(data["lambdas_expensive"], "lambdas_expensive")
    if len(data["lambdas"]) > len(models) or len(data["lambdas_expensive"]) != len(lam):
        raise _Corrupt(
            f"lambdas and lambdas_expensive must have the same length, 1 to {len(models)}"
        )
    gamma = _json_number(data["gamma"], "gamma")
    _want(type(data["fit_info"]) is dict, "fit_info", "an object", data["fit_info"])
    table = data.get("runset_table")
    return cls, {
        "runset_table": None if table is None else _table_fields(table),
        "models": models,
        "order": order,
        "settings": kwargs,
        "lambdas": lam,
        "lambdas_expensive": lam_e,
        "gamma": gamma,
        "fit_info": dict(data["fit_info"]),
    }


def _table_fields(value: Any) -> dict[str, Any]:
    """The fields of ``runset_table`` with their JSON types checked (their meaning is checked
    against the strategy by :func:`_table`)."""
    field = "runset_table"
    _want(type(value) is dict, field, "an object", value)
    keys = sorted(str(f)[:40] for f in value)
    if keys != sorted(TABLE_FIELDS):
        raise _Corrupt(f"{field} must have the keys {list(TABLE_FIELDS)}, got {keys[:10]}")
    _want(type(value["mode"]) is str, f"{field}.mode", "a string", value["mode"])
    if value["mode"] not in _TABLE_MODES:
        raise _Corrupt(f"{field}.mode must be 'covariance' or 'independent'")
    _json_int(value["n_models"], f"{field}.n_models", 1, 64)
    _json_strings(value["order"], f"{field}.order")
    runsets = value["runsets"]
    _want(type(runsets) is list, f"{field}.runsets", "an array of run-set masks", runsets)
    for i, m in enumerate(runsets):
        _json_int(m, f"{field}.runsets[{i}]", 0, (1 << 64) - 1)
    for key in ("factors", "sha256"):
        _want(type(value[key]) is str, f"{field}.{key}", "a string", value[key])
    _want(type(value["complete"]) is bool, f"{field}.complete", "true or false", value["complete"])
    return dict(value)


def _table(strategy: Strategy, t: dict[str, Any]) -> Any:
    """The :class:`RunSetTable` of a policy file, checked against the strategy: its models,
    order and run-sets, and its checksum (docs/policy-format.md §8, rule 12)."""
    from .decider import RunSetTable

    field = "runset_table"
    k = len(strategy.models)
    if t["n_models"] != k:
        raise _Corrupt(f"{field} is for {t['n_models']} models; the policy has {k}")
    order = strategy.model_order
    if tuple(t["order"]) != order:
        raise _Corrupt(
            f"{field} was computed for the model order {t['order']}, not the policy's "
            f"{list(order)}"
        )
    mode = _TABLE_MODES[t["mode"]]
    try:
        values = base64.b64decode(t["factors"].encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise _Corrupt(f"{field}.factors is not base64: {exc}") from None
    runsets = np.array(t["runsets"], dtype=np.uint64)
    digest = _table_digest(
        t["mode"], strategy.models, t["order"], runsets.astype("<u8").tobytes(), values
    )
    if digest != t["sha256"]:
        raise _Corrupt(
            f"{field} checksum does not match its content (corrupted or edited); save the "
            "policy again"
        )
    n = runsets.shape[0]
    per = k * (k + 1) // 2 if mode == UncertaintyMode.COVARIANCE else k
    if len(values) != 8 * n * per:
        raise _Corrupt(
            f"{field}.factors holds {len(values)} bytes; {n} run-sets need {8 * n * per}"
        )
    depth = strategy._depth(k)

    def reachable(m: int) -> bool:  # checked mask by mask: never enumerated
        if m >> k or m.bit_count() > depth:
            return False
        return not (strategy.prefixes_only and m & (m + 1))

    masks = t["runsets"]
    if n == 0 or 0 not in masks or len(set(masks)) != n or not all(map(reachable, masks)):
        raise _Corrupt(
            f"{field}.runsets must be distinct run-sets this strategy can reach, the empty "
            "one included"
        )
    flat = np.frombuffer(values, dtype="<f8").astype(np.float64).reshape(n, per)
    if not all_within(flat, -MAX_MAGNITUDE, MAX_MAGNITUDE):
        raise _Corrupt(f"{field}.factors holds NaN, infinite or values beyond 1e100")
    factors: Any
    if mode == UncertaintyMode.COVARIANCE:
        factors = np.zeros((n, k, k))
        rows, cols = np.tril_indices(k)
        factors[:, rows, cols] = flat
    else:
        if (flat < 0).any():
            raise _Corrupt(f"{field}.factors holds negative standard deviations")
        factors = flat
    idx = np.argsort(runsets, kind="stable")
    return RunSetTable(
        mode,
        strategy.order_.copy(),
        runsets[idx],
        np.ascontiguousarray(factors[idx]),
        t["complete"],
    )


def load_policy(
    path: str | Path,
    quality_estimator: Any,
    cost_estimator: Any,
    *,
    models: Sequence[str] | None = None,
    expected: type[Strategy] | None = None,
) -> Strategy:
    """Read a policy JSON written by :meth:`Strategy.save` and attach the estimators.

    The policy is bound to its models: ``models`` (required unless an estimator has a
    ``models`` attribute, which is then used) must equal the saved names in order, and
    estimators with ``n_models`` must have as many. With ``expected``, the file must hold
    that class. Every rule is in docs/policy-format.md §8; a file that breaks one raises
    ``ValueError`` naming the file and the field, a missing file ``FileNotFoundError``, and
    a call without ``models`` (nothing to bind to) or estimators without ``predict``
    ``TypeError``.
    """
    for role, est in (
        ("quality_estimator", quality_estimator),
        ("cost_estimator", cost_estimator),
    ):
        if not callable(getattr(est, "predict", None)):
            raise TypeError(f"{role} must have a predict(queries, answers) method")
    if models is None and all(
        getattr(est, "models", None) is None for est in (quality_estimator, cost_estimator)
    ):
        # Nothing to compare the saved names with: a policy edited or written for another
        # model list would apply silently to the estimators' columns.
        raise TypeError(
            "load_policy needs models=[...], the model names in the column order of the "
            "estimators, so that a policy for other models is refused (or estimators with a "
            "`models` attribute)"
        )
    p = Path(path)
    data = _read(p)
    try:
        cls, parts = _check_content(data, expected)
        _bound_models(parts["models"], models, (quality_estimator, cost_estimator))
        strat = cls(
            quality_estimator,
            cost_estimator,
            parts["models"],
            order=parts["order"],
            **parts["settings"],
        )
        strat.set_lambdas(
            parts["lambdas"], lambdas_expensive=parts["lambdas_expensive"], gamma=parts["gamma"]
        )
        if parts["runset_table"] is not None:
            strat.runset_table_ = _table(strat, parts["runset_table"])
            strat._table_source = quality_estimator
    except _Corrupt as exc:
        raise ValueError(f"{p} is a corrupted policy file: {exc}") from None
    except (TypeError, ValueError) as exc:
        text = str(exc)
        if text.startswith(("is not", "has policy", "holds a", "was fitted")):
            raise ValueError(f"{p} {text}") from None
        raise ValueError(f"{p} is a corrupted policy file: {text}") from None
    strat.fit_info_ = parts["fit_info"]
    _warm(strat)
    return strat


def _warm(strategy: Strategy) -> None:
    """Build the prepared decider now, so that the first decision after ``load`` costs what
    a warm one does (docs/decider.md §3): only when that needs no estimator pass."""
    from .decider import has_runset_uncertainty

    if not strategy.uses_decider:
        return
    if strategy.runset_table_ is None and has_runset_uncertainty(strategy.quality_estimator):
        return  # an older file without a table: computed on first use
    decider = strategy.decider()
    # One throw-away decision from the empty run-set brings the normals, its factor and this
    # thread's scratch memory into use, as a warm decision finds them.
    k = len(strategy.models)
    try:
        decider.decide(np.zeros(k), np.zeros(k), 0, False)
    except (KeyError, ValueError):
        pass


__all__ = [
    "MAX_POLICY_BYTES",
    "POLICY_FORMAT",
    "SCHEMA_VERSION",
    "STRATEGIES",
    "load_policy",
    "save",
    "to_dict",
]
