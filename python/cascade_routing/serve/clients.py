"""OpenAI-compatible model clients on httpx: ``call_model`` (sync) and ``acall_model`` (async).

:class:`OpenAIUpstreams` calls ``POST {base_url}/chat/completions`` of each configured model
(see :mod:`cascade_routing.serve.config`) and returns a :class:`ServedAnswer`, a
:class:`~cascade_routing.answers.ModelAnswer` whose ``cost`` is measured: the response's
``usage.prompt_tokens × price_in + usage.completion_tokens × price_out``. A response without
``usage`` has ``cost=None`` (unknown), never a guess.

Each call is retried (``retry.max_attempts`` in all) on connection errors, timeouts, 429 and
5xx, with exponential backoff and seeded jitter; a 429's ``Retry-After`` (seconds or an HTTP
date) is honoured when it is at most ``retry.max_retry_after``, otherwise the call fails at
once so that the strategy can try another model. A circuit breaker per upstream opens after
``breaker.failure_threshold`` consecutive failed calls and lets one trial call through
after ``breaker.cooldown`` seconds (half-open). Malformed responses are not retried.

API keys live in :class:`~cascade_routing.serve.config.Secret` objects: they appear only in the
Authorization header, never in a log line, an exception message or a ``repr``. Prompts and
answers are never logged either.

With :meth:`Strategy.run <cascade_routing.Strategy.run>` use :meth:`OpenAIUpstreams.loop_client`
(or :meth:`~OpenAIUpstreams.aloop_client` with ``arun``): it returns the :class:`ServedAnswer`,
whose ``cost`` the loop reads as the call's cost; a reply without ``usage`` keeps its answer
and is recorded with an unknown cost (the estimate is counted, ``cost_complete`` is False).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..answers import ModelAnswer
from .config import ServeConfig, UpstreamConfig, parse_config

log = logging.getLogger(__name__)

__all__ = [
    "ChatQuery",
    "CircuitBreaker",
    "CircuitOpenError",
    "OpenAIUpstreams",
    "ServedAnswer",
    "UpstreamError",
]

_JSON_HEADERS = {"content-type": "application/json", "accept": "application/json"}

#: Parameters of a chat completion request that are passed on to the upstream.
PASSED_PARAMS = (
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
    "n",
)


@dataclass(frozen=True)
class ServedAnswer(ModelAnswer):
    """A :class:`ModelAnswer` with what the call recorded about itself."""

    model: str = ""
    upstream_model: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    attempts: int = 1
    upstream_seconds: float = 0.0

    def __repr__(self) -> str:  # the text stays out of logs and tracebacks
        return (
            f"ServedAnswer(model={self.model!r}, cost={self.cost!r}, "
            f"confidence={self.confidence!r}, chars={len(self.text)})"
        )

    @property
    def token_probability(self) -> float | None:
        """Geometric mean probability of the output tokens, ``exp(mean log-probability)``."""
        if self.logprobs:
            return math.exp(math.fsum(self.logprobs) / len(self.logprobs))
        return None


class ChatQuery:
    """A chat request: messages and parameters. ``repr`` shows the id and sizes, never text,
    so a query logged by the decision loop does not leak its content."""

    __slots__ = ("request_id", "messages", "params", "prompt_chars", "tenant")

    def __init__(
        self,
        messages: Sequence[Mapping[str, Any]] | str,
        *,
        request_id: str = "",
        params: Mapping[str, Any] | None = None,
        tenant: str = "default",
    ) -> None:
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        if isinstance(messages, (bytes, Mapping)) or not isinstance(messages, Sequence):
            raise TypeError("messages must be a list of {role, content} mappings or a string")
        msgs = []
        chars = 0
        for i, m in enumerate(messages):
            if not isinstance(m, Mapping) or not isinstance(m.get("role"), str):
                raise ValueError(f"messages[{i}] must be a mapping with a string 'role'")
            content = m.get("content")
            if isinstance(content, str):
                chars += len(content)
            elif isinstance(content, list):  # content parts: count the text parts
                chars += sum(len(p.get("text", "")) for p in content if isinstance(p, Mapping))
            elif content is not None:
                raise ValueError(f"messages[{i}].content must be a string, a list or null")
            msgs.append(dict(m))
        if not msgs:
            raise ValueError("messages must not be empty")
        self.messages = msgs
        self.params = dict(params or {})
        self.request_id = request_id
        self.prompt_chars = chars
        self.tenant = tenant

    @property
    def prompt_tokens_estimate(self) -> int:
        """About 4 characters per token plus 4 tokens of framing per message."""
        return math.ceil(self.prompt_chars / 4) + 4 * len(self.messages)

    def __repr__(self) -> str:
        return (
            f"ChatQuery(id={self.request_id!r}, messages={len(self.messages)}, "
            f"chars={self.prompt_chars})"
        )


class UpstreamError(RuntimeError):
    """A call to an upstream failed after its retries.

    ``kind`` is one of ``"http_status"``, ``"timeout"``, ``"connect"``, ``"malformed"``,
    ``"circuit_open"``, ``"rate_limited"``. ``billed`` is ``"none"`` when no upstream
    accepted the request, ``"unknown"`` when one may have billed it (a timeout, or a reply
    without usable ``usage``). The message holds no key, prompt or answer text.
    """

    def __init__(
        self,
        model: str,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        attempts: int = 1,
        billed: str = "none",
    ) -> None:
        super().__init__(f"{model}: {message}")
        self.model = model
        self.kind = kind
        self.status = status
        self.attempts = attempts
        self.billed = billed


class CircuitOpenError(UpstreamError):
    """The upstream's circuit breaker is open: the call was not attempted."""


class CircuitBreaker:
    """Closed → open after ``threshold`` consecutive failures → half-open after ``cooldown``
    seconds (one trial call) → closed on its success, open again on its failure."""

    def __init__(self, threshold: int, cooldown: float, clock: Any = time.monotonic) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False

    @property
    def state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            if self._trial or self._clock() - self._opened_at >= self.cooldown:
                return "half_open"
            return "open"

    def allow(self) -> bool:
        with self._lock:
            if self._opened_at is None:
                return True
            if self._trial:
                return False  # one trial at a time
            if self._clock() - self._opened_at >= self.cooldown:
                self._trial = True
                return True
            return False

    def success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial = False

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial or self._failures >= self.threshold:
                self._opened_at = self._clock()
            self._trial = False


@dataclass
class _Attempt:
    """What one HTTP attempt led to."""

    answer: ServedAnswer | None = None
    retry: bool = False
    delay: float | None = None  # from Retry-After
    error: UpstreamError | None = None


@dataclass
class _Upstream:
    cfg: UpstreamConfig
    breaker: CircuitBreaker
    sync_client: httpx.Client | None = None
    async_transport: httpx.AsyncBaseTransport | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class OpenAIUpstreams:
    """Clients for every model of a :class:`ServeConfig` (or its dict form).

    ``call_model(name, query)`` / ``await acall_model(name, query)`` send ``query`` (a string,
    a list of chat messages or a :class:`ChatQuery`) to model ``name`` and return a
    :class:`ServedAnswer`, or raise :class:`UpstreamError`. Safe to share between threads;
    close with :meth:`close` / :meth:`aclose` (or use as a context manager).
    """

    def __init__(
        self,
        config: ServeConfig | Mapping[str, Any],
        *,
        environ: Mapping[str, str] | None = None,
        clock: Any = time.monotonic,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not isinstance(config, ServeConfig):
            config = parse_config(config, environ=environ)
        self.config = config
        self._rng = random.Random(config.retry.seed)
        self._rng_lock = threading.Lock()
        self._transport = transport
        self._async_transport = async_transport
        self._upstreams = {
            m.name: _Upstream(
                m, CircuitBreaker(config.breaker.failure_threshold, config.breaker.cooldown, clock)
            )
            for m in config.models
        }

    # -------------------------------------------------------------- public

    @property
    def models(self) -> tuple[str, ...]:
        return self.config.model_names

    def breaker(self, name: str) -> CircuitBreaker:
        return self._get(name).breaker

    def call_model(self, name: str, query: Any, **params: Any) -> ServedAnswer:
        """Call model ``name`` synchronously (retries, breaker); see the class docstring."""
        up = self._get(name)
        body = self._body(up.cfg, query, params)
        self._check_breaker(up)
        attempt_no = 0
        while True:
            attempt_no += 1
            started = time.perf_counter()
            client = self._sync_client(up)
            try:
                resp = client.post(
                    "/chat/completions",
                    json=body,
                    headers=self._headers(up.cfg),
                    timeout=up.cfg.timeout,
                )
                outcome = self._outcome(
                    up.cfg,
                    resp.status_code,
                    resp.headers,
                    resp.content,
                    attempt_no,
                    time.perf_counter() - started,
                )
            except httpx.TimeoutException:
                outcome = self._timeout(up.cfg, attempt_no)
            except httpx.TransportError as exc:
                outcome = self._connect(up.cfg, exc, attempt_no)
            delay = self._settle(up, outcome, attempt_no)
            if delay is None:
                return self._result(outcome)
            time.sleep(delay)

    async def acall_model(self, name: str, query: Any, **params: Any) -> ServedAnswer:
        """Call model ``name`` asynchronously; cancelling the task cancels the HTTP request."""
        up = self._get(name)
        payload = json.dumps(self._body(up.cfg, query, params)).encode()
        self._check_breaker(up)
        attempt_no = 0
        while True:
            attempt_no += 1
            started = time.perf_counter()
            transport = self._async_transport_for(up)
            # The transport straight, not an AsyncClient: a client's URL merging, cookies,
            # auth and redirect layers cost about 0.4 ms of CPU per call and serve no purpose
            # for one fixed endpoint.
            request = httpx.Request(
                "POST",
                up.cfg.base_url + "/chat/completions",
                content=payload,
                headers={**up.cfg.headers, **self._headers(up.cfg), **_JSON_HEADERS},
                extensions={"timeout": httpx.Timeout(up.cfg.timeout).as_dict()},
            )
            try:
                resp = await transport.handle_async_request(request)
                try:
                    content = await resp.aread()
                finally:
                    await resp.aclose()
                outcome = self._outcome(
                    up.cfg,
                    resp.status_code,
                    resp.headers,
                    content,
                    attempt_no,
                    time.perf_counter() - started,
                )
            except httpx.TimeoutException:
                outcome = self._timeout(up.cfg, attempt_no)
            except httpx.TransportError as exc:
                outcome = self._connect(up.cfg, exc, attempt_no)
            delay = self._settle(up, outcome, attempt_no)
            if delay is None:
                return self._result(outcome)
            await asyncio.sleep(delay)

    def loop_client(self) -> Any:
        """``call_model(name, query) -> ServedAnswer`` for :meth:`Strategy.run`.

        The answer's ``cost`` is the measured cost; a reply without ``usage`` has
        ``cost=None``, which the loop records as an unknown cost (the paid answer is kept,
        never dropped for want of a price).
        """

        def call(name: str, query: Any) -> ServedAnswer:
            return self.call_model(name, query)

        return call

    def aloop_client(self) -> Any:
        """The async counterpart of :meth:`loop_client`, for :meth:`Strategy.arun`."""

        async def call(name: str, query: Any) -> ServedAnswer:
            return await self.acall_model(name, query)

        return call

    def close(self) -> None:
        for up in self._upstreams.values():
            if up.sync_client is not None:
                up.sync_client.close()
                up.sync_client = None

    async def aclose(self) -> None:
        closed: set[int] = set()
        for up in self._upstreams.values():
            transport, up.async_transport = up.async_transport, None
            if transport is not None and id(transport) not in closed:
                closed.add(id(transport))
                await transport.aclose()
        self.close()

    def __enter__(self) -> OpenAIUpstreams:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> OpenAIUpstreams:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"OpenAIUpstreams(models={list(self.models)})"

    # -------------------------------------------------------------- internals

    def _get(self, name: str) -> _Upstream:
        try:
            return self._upstreams[name]
        except KeyError:
            raise ValueError(
                f"unknown model {name!r}; configured models: {list(self._upstreams)}"
            ) from None

    def _check_breaker(self, up: _Upstream) -> None:
        if not up.breaker.allow():
            raise CircuitOpenError(
                up.cfg.name,
                "circuit_open",
                "circuit breaker open after repeated failures; not called",
                attempts=0,
            )

    def _sync_client(self, up: _Upstream) -> httpx.Client:
        with up.lock:
            if up.sync_client is None:
                up.sync_client = httpx.Client(
                    base_url=up.cfg.base_url,
                    transport=self._transport,
                    headers=dict(up.cfg.headers),
                )
            return up.sync_client

    def _async_transport_for(self, up: _Upstream) -> httpx.AsyncBaseTransport:
        if up.async_transport is None:
            up.async_transport = self._async_transport or httpx.AsyncHTTPTransport(
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=32)
            )
        return up.async_transport

    @staticmethod
    def _headers(cfg: UpstreamConfig) -> dict[str, str]:
        if cfg.api_key is None:
            return {}
        return {"Authorization": f"Bearer {cfg.api_key.reveal()}"}

    @staticmethod
    def _body(cfg: UpstreamConfig, query: Any, params: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(query, ChatQuery):
            query = ChatQuery(query)
        body: dict[str, Any] = {"model": cfg.model, "messages": query.messages}
        for key in PASSED_PARAMS:
            if key in query.params:
                body[key] = query.params[key]
        for key, value in params.items():
            if key not in PASSED_PARAMS:
                raise TypeError(f"unsupported chat parameter {key!r}; allowed: {PASSED_PARAMS}")
            body[key] = value
        if cfg.logprobs:
            body["logprobs"] = True
            if cfg.top_logprobs:
                body["top_logprobs"] = cfg.top_logprobs
        body["stream"] = False
        return body

    def _backoff(self, attempt_no: int) -> float:
        r = self.config.retry
        with self._rng_lock:
            jitter = self._rng.random()
        return min(r.max_delay, r.base_delay * 2.0 ** (attempt_no - 1)) * (0.5 + jitter)

    def _outcome(
        self,
        cfg: UpstreamConfig,
        status: int,
        headers: Mapping[str, str],
        content: bytes,
        attempt_no: int,
        seconds: float,
    ) -> _Attempt:
        if status == 429:
            wait = _retry_after(headers.get("retry-after"))
            limit = self.config.retry.max_retry_after
            if wait is not None and wait > limit:
                err = UpstreamError(
                    cfg.name,
                    "rate_limited",
                    f"HTTP 429 with Retry-After {wait:.1f}s > {limit:.1f}s",
                    status=429,
                    attempts=attempt_no,
                )
                return _Attempt(error=err)
            err = UpstreamError(
                cfg.name,
                "rate_limited",
                "HTTP 429 (rate limited)",
                status=429,
                attempts=attempt_no,
            )
            return _Attempt(retry=True, delay=wait, error=err)
        if status >= 500 or status == 408:
            err = UpstreamError(
                cfg.name,
                "http_status",
                f"HTTP {status}",
                status=status,
                attempts=attempt_no,
                billed="none",
            )
            return _Attempt(retry=True, error=err)
        if status >= 400:
            err = UpstreamError(
                cfg.name,
                "http_status",
                f"HTTP {status} (not retried)",
                status=status,
                attempts=attempt_no,
            )
            return _Attempt(error=err)
        try:
            data = json.loads(content)
        except (UnicodeDecodeError, json.JSONDecodeError):
            err = UpstreamError(
                cfg.name,
                "malformed",
                "the reply is not valid JSON",
                status=status,
                attempts=attempt_no,
                billed="unknown",
            )
            return _Attempt(error=err)
        try:
            base = ModelAnswer.from_openai(data, price_in=cfg.price_in, price_out=cfg.price_out)
            usage = data.get("usage") or {}
            choice = data["choices"][0]
            answer = ServedAnswer(
                text=base.text,
                parsed=base.parsed,
                confidence=base.confidence,
                logprobs=base.logprobs,
                tokens=base.tokens,
                cost=base.cost,
                model=cfg.name,
                upstream_model=str(data.get("model", cfg.model)),
                prompt_tokens=usage.get("prompt_tokens"),
                completion_tokens=usage.get("completion_tokens"),
                finish_reason=choice.get("finish_reason") if isinstance(choice, Mapping) else None,
                attempts=attempt_no,
                upstream_seconds=seconds,
            )
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            # The message of from_openai names fields only, never their content.
            err = UpstreamError(
                cfg.name,
                "malformed",
                f"the reply is not a chat completion ({type(exc).__name__}: {_first_line(exc)})",
                status=status,
                attempts=attempt_no,
                billed="unknown",
            )
            return _Attempt(error=err)
        return _Attempt(answer=answer)

    def _timeout(self, cfg: UpstreamConfig, attempt_no: int) -> _Attempt:
        err = UpstreamError(
            cfg.name,
            "timeout",
            f"no reply within {cfg.timeout:g}s",
            attempts=attempt_no,
            billed="unknown",
        )
        return _Attempt(retry=True, error=err)

    def _connect(self, cfg: UpstreamConfig, exc: Exception, attempt_no: int) -> _Attempt:
        err = UpstreamError(
            cfg.name, "connect", f"transport error ({type(exc).__name__})", attempts=attempt_no
        )
        return _Attempt(retry=True, error=err)

    def _settle(self, up: _Upstream, outcome: _Attempt, attempt_no: int) -> float | None:
        """Record the attempt; the delay before the next attempt, or None to stop."""
        if outcome.answer is not None:
            up.breaker.success()
            return None
        assert outcome.error is not None
        if outcome.retry and attempt_no < self.config.retry.max_attempts:
            log.info(
                "model %s attempt %d failed (%s); retrying",
                up.cfg.name,
                attempt_no,
                outcome.error.kind,
            )
            return outcome.delay if outcome.delay is not None else self._backoff(attempt_no)
        up.breaker.failure()
        return None

    @staticmethod
    def _result(outcome: _Attempt) -> ServedAnswer:
        if outcome.answer is not None:
            return outcome.answer
        assert outcome.error is not None
        raise outcome.error


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else ""
