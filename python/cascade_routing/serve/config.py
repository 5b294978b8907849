"""The upstream configuration of the gateway and of the OpenAI-compatible clients.

A YAML or JSON file (or the same structure as a dict) with one entry per model of the policy::

    models:
      small:
        base_url: http://127.0.0.1:8001/v1     # any OpenAI-compatible endpoint
        model: gpt-4o-mini                     # the upstream model name
        price_in: 1.5e-7                       # $ per input token
        price_out: 6.0e-7                      # $ per output token
        api_key_env: SMALL_API_KEY             # the key is read from this variable
        logprobs: true                         # the upstream returns token log-probabilities
        prior_quality: 0.55                    # serve-time estimator (see estimators.py)
        prior_sd: 0.25
        expected_output_tokens: 256
    retry: {max_attempts: 3, base_delay: 0.2, max_delay: 5.0, max_retry_after: 10.0, seed: 0}
    breaker: {failure_threshold: 5, cooldown: 30.0}
    estimator: {kind: confidence_prior, weight: 0.8, post_sd: 0.1}
    budget:
      default: 0.002                           # $ per query, mean over queries
      per_request_cap: 0.05                    # $ hard cap per request
      state_file: budget-state.json
      tenants: {team-a: {api_key_env: TEAM_A_KEY, budget: 0.001}}
    feedback: {max_entries: 10000, jsonl: feedback.jsonl}
    server: {host: 127.0.0.1, port: 8080, deadline: 60.0, call_timeout: 30.0}
    # server.offload_planning: true runs the estimators off the event loop (heavy estimators)

Everything is checked when the file is loaded (:func:`load_config`): unknown keys, missing or
wrong-typed values and API-key variables that are not set raise :class:`ConfigError` naming
the field, so that a gateway fails at start-up rather than at its first request. API keys
are held in :class:`Secret` objects whose ``repr`` and ``str`` never show the value.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BreakerConfig",
    "BudgetConfig",
    "ConfigError",
    "EstimatorConfig",
    "FeedbackConfig",
    "RetryConfig",
    "Secret",
    "ServeConfig",
    "ServerConfig",
    "TenantConfig",
    "UpstreamConfig",
    "load_config",
    "parse_config",
]


class ConfigError(ValueError):
    """The upstream configuration is invalid; the message names the field and the fix."""


class Secret:
    """A credential that never shows itself in ``repr``, ``str``, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The value, for the one place that needs it (the Authorization header)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class UpstreamConfig:
    """One model of the policy: where it is served, under what name and at what price."""

    name: str
    base_url: str
    model: str
    price_in: float
    price_out: float
    api_key_env: str | None = field(default=None)
    api_key: Secret | None = field(default=None, repr=False)
    logprobs: bool = False
    top_logprobs: int = 0
    timeout: float = 30.0
    expected_output_tokens: int = 256
    prior_quality: float = 0.5
    prior_sd: float = 0.25
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RetryConfig:
    """Retries of one call: exponential backoff with seeded jitter; 429 ``Retry-After`` honoured
    up to ``max_retry_after`` seconds (a longer wait fails the call so another model is tried)."""

    max_attempts: int = 3
    base_delay: float = 0.2
    max_delay: float = 5.0
    max_retry_after: float = 10.0
    seed: int = 0


@dataclass(frozen=True)
class BreakerConfig:
    """A circuit breaker per upstream: open after ``failure_threshold`` consecutive failed
    calls, half-open (one trial call) after ``cooldown`` seconds."""

    failure_threshold: int = 5
    cooldown: float = 30.0


@dataclass(frozen=True)
class EstimatorConfig:
    """The serve-time quality estimator (``kind``) and its parameters; see estimators.py."""

    kind: str = "confidence_prior"
    weight: float = 0.8
    post_sd: float = 0.1


@dataclass(frozen=True)
class TenantConfig:
    """A tenant: callers presenting the key held in ``api_key_env`` spend ``budget``."""

    name: str
    budget: float
    api_key_env: str
    api_key: Secret | None = field(default=None, repr=False)


@dataclass(frozen=True)
class BudgetConfig:
    """Online budget control (see budget.py): mean $ per query per tenant, a hard cap."""

    default: float | None = None
    per_request_cap: float | None = None
    state_file: str | None = None
    save_every: int = 100
    tenants: tuple[TenantConfig, ...] = ()
    require_tenant_key: bool = False
    gain_p: float = 0.5
    gain_i: float = 0.05
    smoothing: int = 50
    max_log_scale: float = 6.0


@dataclass(frozen=True)
class FeedbackConfig:
    """Outcomes reported by callers: kept in memory (bounded) and appended to ``jsonl``."""

    max_entries: int = 10_000
    jsonl: str | None = None
    remember_requests: int = 100_000


@dataclass(frozen=True)
class ServerConfig:
    """Where the gateway listens and how long a request may take."""

    host: str = "127.0.0.1"
    port: int = 8080
    deadline: float = 60.0
    call_timeout: float = 30.0
    fallback_model: str | None = None
    routed_model: str = "cascade-routing"
    log_queries: bool = False
    max_body_bytes: int = 4_000_000
    offload_planning: bool = False


@dataclass(frozen=True)
class ServeConfig:
    """The whole configuration; ``models`` keeps the order of the file."""

    models: tuple[UpstreamConfig, ...]
    retry: RetryConfig = RetryConfig()
    breaker: BreakerConfig = BreakerConfig()
    estimator: EstimatorConfig = EstimatorConfig()
    budget: BudgetConfig = BudgetConfig()
    feedback: FeedbackConfig = FeedbackConfig()
    server: ServerConfig = ServerConfig()
    source: str = "<dict>"

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)

    def upstream(self, name: str) -> UpstreamConfig:
        for m in self.models:
            if m.name == name:
                return m
        raise ConfigError(
            f"{self.source}: unknown model {name!r}; configured models: {list(self.model_names)}"
        )


# ----------------------------------------------------------------------------- parsing helpers


class _Section:
    """Reads one mapping of the file, naming ``where`` in every error."""

    def __init__(self, data: Any, where: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
        self.data = dict(data)
        self.where = where
        self.used: set[str] = set()

    def _get(self, key: str, default: Any) -> Any:
        self.used.add(key)
        return self.data.get(key, default)

    def string(self, key: str, default: Any = ..., *, optional: bool = False) -> Any:
        value = self._get(key, default)
        if value is ...:
            raise ConfigError(f"{self.where}.{key} is required (a string)")
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{self.where}.{key} must be a non-empty string, got {value!r}")
        return value

    def number(
        self,
        key: str,
        default: Any = ...,
        *,
        low: float = 0.0,
        optional: bool = False,
        positive: bool = False,
    ) -> Any:
        value = self._get(key, default)
        if value is ...:
            raise ConfigError(f"{self.where}.{key} is required (a number)")
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{self.where}.{key} must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value) or value < low or (positive and value <= 0):
            bound = f"> {low}" if positive else f">= {low}"
            raise ConfigError(f"{self.where}.{key} must be finite and {bound}, got {value!r}")
        return value

    def integer(self, key: str, default: Any = ..., *, low: int = 0) -> int:
        value = self._get(key, default)
        if value is ...:
            raise ConfigError(f"{self.where}.{key} is required (an integer)")
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{self.where}.{key} must be an integer >= {low}, got {value!r}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.where}.{key} must be true or false, got {value!r}")
        return value

    def section(self, key: str) -> _Section:
        return _Section(self._get(key, None), f"{self.where}.{key}")

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(
                f"{self.where} has unknown keys {unknown}; allowed: {sorted(self.used)}"
            )


def _secret(env_name: str | None, where: str, environ: Mapping[str, str]) -> Secret | None:
    if env_name is None:
        return None
    value = environ.get(env_name)
    if not value:
        raise ConfigError(
            f"{where}: the API key variable {env_name} is not set in the environment; "
            f"export {env_name}=... before starting (or remove api_key_env for an endpoint "
            "that needs no key)"
        )
    return Secret(value)


def _upstream(name: str, data: Any, where: str, environ: Mapping[str, str]) -> UpstreamConfig:
    s = _Section(data, where)
    base_url = s.string("base_url")
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(
            f"{where}.base_url must start with http:// or https://, got {base_url!r}"
        )
    env = s.string("api_key_env", None, optional=True)
    headers = s._get("headers", {}) or {}
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise ConfigError(f"{where}.headers must map header names to strings")
    cfg = UpstreamConfig(
        name=name,
        base_url=base_url.rstrip("/"),
        model=s.string("model", name),
        price_in=s.number("price_in"),
        price_out=s.number("price_out"),
        api_key_env=env,
        api_key=_secret(env, where, environ),
        logprobs=s.boolean("logprobs", False),
        top_logprobs=s.integer("top_logprobs", 0),
        timeout=s.number("timeout", 30.0, positive=True),
        expected_output_tokens=s.integer("expected_output_tokens", 256, low=1),
        prior_quality=s.number("prior_quality", 0.5, low=-1e9),
        prior_sd=s.number("prior_sd", 0.25),
        headers=dict(headers),
    )
    s.done()
    return cfg


def parse_config(
    data: Any, *, source: str = "<dict>", environ: Mapping[str, str] | None = None
) -> ServeConfig:
    """Validate a configuration given as plain data (what :func:`load_config` reads)."""
    env = os.environ if environ is None else environ
    top = _Section(data, source)
    models_data = top._get("models", None)
    if not isinstance(models_data, Mapping) or not models_data:
        raise ConfigError(
            f"{source}: 'models' must be a non-empty mapping of model name to "
            "upstream settings (base_url, model, price_in, price_out, ...)"
        )
    models = tuple(
        _upstream(str(name), spec, f"{source}: models.{name}", env)
        for name, spec in models_data.items()
    )
    r = top.section("retry")
    retry = RetryConfig(
        max_attempts=r.integer("max_attempts", 3, low=1),
        base_delay=r.number("base_delay", 0.2),
        max_delay=r.number("max_delay", 5.0),
        max_retry_after=r.number("max_retry_after", 10.0),
        seed=r.integer("seed", 0),
    )
    r.done()
    b = top.section("breaker")
    breaker = BreakerConfig(
        failure_threshold=b.integer("failure_threshold", 5, low=1),
        cooldown=b.number("cooldown", 30.0),
    )
    b.done()
    e = top.section("estimator")
    estimator = EstimatorConfig(
        kind=e.string("kind", "confidence_prior"),
        weight=e.number("weight", 0.8),
        post_sd=e.number("post_sd", 0.1),
    )
    e.done()
    if estimator.kind != "confidence_prior":
        raise ConfigError(
            f"{source}: estimator.kind {estimator.kind!r} is unknown; "
            "available: 'confidence_prior'"
        )
    if estimator.weight > 1:
        raise ConfigError(f"{source}: estimator.weight must be in [0, 1], got {estimator.weight}")
    bs = top.section("budget")
    tenants_data = bs._get("tenants", {}) or {}
    if not isinstance(tenants_data, Mapping):
        raise ConfigError(
            f"{source}: budget.tenants must map tenant names to {{api_key_env, budget}}"
        )
    tenants = []
    for tname, tspec in tenants_data.items():
        ts = _Section(tspec, f"{source}: budget.tenants.{tname}")
        tenv = ts.string("api_key_env")
        tenants.append(
            TenantConfig(
                str(tname), ts.number("budget", positive=True), tenv, _secret(tenv, ts.where, env)
            )
        )
        ts.done()
    budget = BudgetConfig(
        default=bs.number("default", None, optional=True, positive=True),
        per_request_cap=bs.number("per_request_cap", None, optional=True, positive=True),
        state_file=bs.string("state_file", None, optional=True),
        save_every=bs.integer("save_every", 100, low=1),
        tenants=tuple(tenants),
        require_tenant_key=bs.boolean("require_tenant_key", False),
        gain_p=bs.number("gain_p", 0.5),
        gain_i=bs.number("gain_i", 0.05),
        smoothing=bs.integer("smoothing", 50, low=1),
        max_log_scale=bs.number("max_log_scale", 6.0, positive=True),
    )
    bs.done()
    keys = [t.api_key for t in tenants]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"{source}: two tenants share one API key")
    if budget.require_tenant_key and not tenants:
        raise ConfigError(f"{source}: budget.require_tenant_key needs budget.tenants")
    f = top.section("feedback")
    feedback = FeedbackConfig(
        max_entries=f.integer("max_entries", 10_000, low=1),
        jsonl=f.string("jsonl", None, optional=True),
        remember_requests=f.integer("remember_requests", 100_000, low=1),
    )
    f.done()
    sv = top.section("server")
    server = ServerConfig(
        host=sv.string("host", "127.0.0.1"),
        port=sv.integer("port", 8080),
        deadline=sv.number("deadline", 60.0, positive=True),
        call_timeout=sv.number("call_timeout", 30.0, positive=True),
        fallback_model=sv.string("fallback_model", None, optional=True),
        routed_model=sv.string("routed_model", "cascade-routing"),
        log_queries=sv.boolean("log_queries", False),
        max_body_bytes=sv.integer("max_body_bytes", 4_000_000, low=1),
        offload_planning=sv.boolean("offload_planning", False),
    )
    sv.done()
    top.done()
    cfg = ServeConfig(models, retry, breaker, estimator, budget, feedback, server, source)
    if server.fallback_model is not None:
        cfg.upstream(server.fallback_model)  # raises ConfigError if unknown
    return cfg


def load_config(path: str | Path, *, environ: Mapping[str, str] | None = None) -> ServeConfig:
    """Read and validate a YAML (``.yaml``/``.yml``) or JSON configuration file."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the upstream config {p}: {exc.strerror or exc}") from exc
    if p.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:  # pragma: no cover - PyYAML ships with the [serve] extra
            raise ConfigError(f"{p} is YAML; install PyYAML or write the config as JSON") from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p} is not valid YAML: {exc}") from exc
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{p} is not valid JSON: {exc}") from exc
    return parse_config(data, source=str(p), environ=environ)
