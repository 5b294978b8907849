"""An OpenAI-compatible gateway (Starlette under uvicorn) in front of a saved policy.

Routes
------
``POST /v1/chat/completions``
    Routes the request with the policy: the strategy's ``arun`` decides which configured
    models to call, in what order, and which answer to return. The response is an OpenAI
    ``chat.completion`` (or, with ``"stream": true``, server-sent ``chat.completion.chunk``
    events carrying the accepted answer once it is chosen), with an extension field
    ``cascade_routing``: ``request_id``, answering ``model``, total measured ``cost`` and the
    decision ``trace`` (models tried, every step's plan, λ in force, final estimates, the
    runner-up, the calls with their status and cost).
``GET /v1/models``, ``GET /healthz``, ``GET /metrics`` (Prometheus), ``GET /v1/savings``
``POST /v1/feedback``
    ``{"request_id": ..., "score": number?, "label": str?, "comment": str?}``: an outcome of a
    served request, kept in a bounded in-memory log and appended to a JSONL file if configured.

No request is dropped: each gets an answer or an error status whose body carries its trace
(``cascade_routing.trace``). When the decision loop cannot finish (deadline, an estimator that
raises), the best answer already paid for is returned (``trace.fallback = "best_so_far"``);
without any, the configured ``server.fallback_model`` is called (``"fallback_model"``). Status
codes: 400 bad request, 401 unknown tenant key, 402 the per-request cost cap leaves no model,
404 unknown model or request id, 413 body too large, 502 every upstream failed, 504 deadline
with no answer, 500 anything else with no answer.

With ``server.offload_planning: true`` every call of the estimators (the decision steps, the
trace's final estimates) runs in the default executor rather than on the event loop, for
estimators heavy enough to stall other requests; they must then be thread-safe.

Prompts and answers are never logged unless ``server.log_queries`` is true.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..engine import standard_normals
from ..strategies import AllModelsFailedError, Strategy, ThresholdCascade, load_policy
from .budget import TenantBudgets
from .clients import ChatQuery, OpenAIUpstreams, ServedAnswer, UpstreamError
from .config import ConfigError, ServeConfig, load_config
from .estimators import estimators_from_config
from .telemetry import CONTENT_TYPE, Telemetry, request_span

log = logging.getLogger(__name__)

__all__ = ["CostCapError", "FeedbackLog", "Gateway", "build_gateway"]

DEFAULT_TENANT = "default"
_T = TypeVar("_T")


class CostCapError(RuntimeError):
    """The next call would take the request over ``budget.per_request_cap``: not made."""


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN and infinities become null, tuples lists, NumPy scalars floats."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (np.floating, np.integer)):
        return _clean(value.item())
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class FeedbackLog:
    """Outcomes reported for request ids: bounded in memory, appended to a JSONL file."""

    def __init__(self, max_entries: int, jsonl: str | None, remember: int) -> None:
        self.entries: deque[dict[str, Any]] = deque(maxlen=max_entries)
        self.path = None if jsonl is None else Path(jsonl)
        self.requests: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.remember = remember
        self._lock = threading.Lock()

    def served(self, request_id: str, info: dict[str, Any]) -> None:
        with self._lock:
            self.requests[request_id] = info
            while len(self.requests) > self.remember:
                self.requests.popitem(last=False)

    def add(self, entry: dict[str, Any]) -> bool:
        """Record ``entry``; False if its request id is unknown (not served or forgotten)."""
        with self._lock:
            info = self.requests.get(entry["request_id"])
            if info is None:
                return False
            record = {**entry, **info, "received": time.time()}
            self.entries.append(record)
            if self.path is not None:
                with self.path.open("a") as f:
                    f.write(json.dumps(record) + "\n")
            return True


@dataclass
class _Call:
    model: str
    status: str
    seconds: float
    cost: float | None = None
    kind: str | None = None
    http_status: int | None = None
    attempts: int = 0
    billed: str = "none"


@dataclass
class _Record:
    """What happened to one request, kept by the gateway itself so that nothing is lost
    whatever the decision loop does."""

    query: ChatQuery
    calls: list[_Call] = field(default_factory=list)
    answers: dict[str, ServedAnswer] = field(default_factory=dict)
    spent: float = 0.0
    unknown_cost: int = 0
    unknown_estimate: float = 0.0
    upstream_seconds: float = 0.0
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)


class _Outcome:
    def __init__(
        self,
        status: int,
        answer: ServedAnswer | None,
        trace: dict[str, Any],
        error: tuple[str, str] | None = None,
    ) -> None:
        self.status = status
        self.answer = answer
        self.trace = trace
        self.error = error


class Gateway:
    """The serving state: the policy per tenant, clients, budgets, telemetry and feedback.

    Everything is validated here, before any request: see :func:`build_gateway`.
    """

    def __init__(
        self,
        policy: str | Path,
        config: ServeConfig,
        *,
        quality_estimator: Any = None,
        cost_estimator: Any = None,
        upstreams: OpenAIUpstreams | None = None,
    ) -> None:
        self.config = config
        policy_models = _policy_models(policy)
        configured = set(config.model_names)
        missing = [m for m in policy_models if m not in configured]
        extra = [m for m in config.model_names if m not in policy_models]
        if missing or extra:
            raise ConfigError(
                f"the policy {policy} and the config {config.source} name different models: "
                f"policy-only {missing}, config-only {extra}; configure exactly the policy's "
                f"models {policy_models}"
            )
        self.models = tuple(policy_models)
        q_default, c_default = estimators_from_config(config, self.models)
        self.quality = quality_estimator if quality_estimator is not None else q_default
        self.cost = cost_estimator if cost_estimator is not None else c_default
        self._ante = getattr(self.cost, "ante", None) or c_default.ante
        self.dearest = self.models[
            int(
                np.argmax(
                    [
                        config.upstream(m).price_in + config.upstream(m).price_out
                        for m in self.models
                    ]
                )
            )
        ]
        budgets: dict[str, float] = {}
        if config.budget.default is not None:
            budgets[DEFAULT_TENANT] = config.budget.default
        for t in config.budget.tenants:
            budgets[t.name] = t.budget
        self.tenant_keys = {
            _key_digest(t.api_key.reveal()): t.name
            for t in config.budget.tenants
            if t.api_key is not None
        }
        tenants = [DEFAULT_TENANT] + [t.name for t in config.budget.tenants]
        self.strategies: dict[str, Strategy] = {}
        for tenant in tenants:
            try:
                strat = load_policy(policy, self.quality, self.cost, models=self.models)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"cannot load the policy {policy}: {exc}") from exc
            self.strategies[tenant] = strat
        any_strategy = self.strategies[DEFAULT_TENANT]
        self.kind = type(any_strategy).__name__
        # What the first request would pay for otherwise: the quasi-random normals of the
        # search are built (and SciPy imported) on first use, seconds on a cold start.
        for strat in self.strategies.values():
            for k in range(1, len(self.models) + 1):
                standard_normals(k, strat.n_samples, strat.sample_seed)
        self._base: dict[str, tuple[list[float], list[float] | None, float]] = {}
        for tname, strat in self.strategies.items():
            if strat.lambdas_ is None:
                raise ConfigError(f"the policy {policy} holds no multipliers")
            alt = strat.lambdas_expensive_
            self._base[tname] = (
                strat.lambdas_.tolist(),
                None if alt is None else alt.tolist(),
                strat.gamma_,
            )
        if isinstance(any_strategy, ThresholdCascade) and budgets:
            raise ConfigError(
                "budget control scales the multipliers λ of a cost trade-off; a "
                "ThresholdCascade's λ are thresholds: serve it without "
                "budget.default and budget.tenants"
            )
        bc = config.budget
        self.budgets = TenantBudgets(
            budgets,
            state_file=bc.state_file,
            save_every=bc.save_every,
            gain_i=bc.gain_i,
            gain_p=bc.gain_p,
            smoothing=bc.smoothing,
            max_log_scale=bc.max_log_scale,
        )
        self.upstreams = upstreams if upstreams is not None else OpenAIUpstreams(config)
        self.telemetry = Telemetry()
        self.feedback = FeedbackLog(
            config.feedback.max_entries, config.feedback.jsonl, config.feedback.remember_requests
        )
        self.inflight: set[asyncio.Task[Any]] = set()
        for tenant in budgets:
            self._apply_scale(tenant)
        for tenant in self.strategies:
            self._publish_lambda(tenant)
        self.created = int(time.time())
        self.closed = False

    # ------------------------------------------------------------------ λ per tenant

    def _apply_scale(self, tenant: str) -> None:
        scale = self.budgets.controller(tenant).scale
        lam, lam_e, gamma = self._base[tenant]
        self.strategies[tenant].set_lambdas(
            [x * scale for x in lam],
            lambdas_expensive=None if lam_e is None else [x * scale for x in lam_e],
            gamma=gamma,
        )

    def _publish_lambda(self, tenant: str) -> None:
        strat = self.strategies[tenant]
        assert strat.lambdas_ is not None
        self.telemetry.lam.labels(tenant).set(float(strat.lambdas_[0]))
        if tenant in self.budgets.controllers:
            ctl = self.budgets.controller(tenant)
            self.telemetry.lam_scale.labels(tenant).set(ctl.scale)
            self.telemetry.mean_cost.labels(tenant).set(ctl.mean_cost)

    # ------------------------------------------------------------------ the app

    def app(self) -> Starlette:
        routes = [
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            Route("/v1/models", self.list_models, methods=["GET"]),
            Route("/v1/feedback", self.post_feedback, methods=["POST"]),
            Route("/v1/savings", self.savings, methods=["GET"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
        ]
        return Starlette(routes=routes, lifespan=self._lifespan)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        log.info("gateway up: %s over %s", self.kind, list(self.models))
        try:
            yield
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Cancel what is still running, close the clients and save the budget state."""
        if self.closed:
            return
        self.closed = True
        pending = [t for t in self.inflight if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        await self.upstreams.aclose()
        self.budgets.save()
        log.info("gateway closed (%d in-flight calls cancelled)", len(pending))

    # ------------------------------------------------------------------ small routes

    async def list_models(self, request: Request) -> Response:
        data = [
            {
                "id": self.config.server.routed_model,
                "object": "model",
                "created": self.created,
                "owned_by": "cascade-routing",
            }
        ]
        return JSONResponse({"object": "list", "data": data})

    async def healthz(self, request: Request) -> Response:
        states = {m: self.upstreams.breaker(m).state for m in self.models}
        usable = any(s != "open" for s in states.values())
        return JSONResponse(
            {"status": "ok" if usable else "degraded", "policy": self.kind, "upstreams": states},
            status_code=200 if usable else 503,
        )

    async def metrics(self, request: Request) -> Response:
        for m in self.models:
            self.telemetry.breaker_open.labels(m).set(
                1.0 if self.upstreams.breaker(m).state == "open" else 0.0
            )
        return Response(self.telemetry.exposition(), media_type=CONTENT_TYPE)

    async def savings(self, request: Request) -> Response:
        return JSONResponse(_clean(self.telemetry.savings.report(self.dearest)))

    async def post_feedback(self, request: Request) -> Response:
        try:
            data = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "invalid_request_error", "the body is not valid JSON")
        if not isinstance(data, dict) or not isinstance(data.get("request_id"), str):
            return _error(
                400,
                "invalid_request_error",
                "feedback needs a string 'request_id' (the id of a served response)",
            )
        score = data.get("score")
        if score is not None and (
            isinstance(score, bool)
            or not isinstance(score, (int, float))
            or not math.isfinite(score)
        ):
            return _error(400, "invalid_request_error", "'score' must be a finite number")
        label = data.get("label")
        comment = data.get("comment")
        if any(v is not None and not isinstance(v, str) for v in (label, comment)):
            return _error(400, "invalid_request_error", "'label' and 'comment' must be strings")
        entry = {
            "request_id": data["request_id"],
            "score": score,
            "label": label,
            "comment": comment,
        }
        if not self.feedback.add(entry):
            return _error(
                404,
                "not_found_error",
                f"unknown request id {data['request_id'][:80]!r} (not served here, "
                "or older than feedback.remember_requests)",
            )
        return JSONResponse(
            {"status": "recorded", "request_id": data["request_id"]}, status_code=202
        )

    # ------------------------------------------------------------------ chat completions

    def _tenant(self, request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        key = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        tenant = self.tenant_keys.get(_key_digest(key)) if key else None
        if tenant is not None:
            return tenant
        return None if self.config.budget.require_tenant_key else DEFAULT_TENANT

    async def chat_completions(self, request: Request) -> Response:
        started = time.perf_counter()
        request_id = "chatcmpl-" + uuid.uuid4().hex
        body = await request.body()
        if len(body) > self.config.server.max_body_bytes:
            return _error(413, "invalid_request_error", "the request body is too large")
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "invalid_request_error", "the body is not valid JSON")
        if not isinstance(data, dict):
            return _error(400, "invalid_request_error", "the body must be a JSON object")
        model = data.get("model", self.config.server.routed_model)
        if model != self.config.server.routed_model:
            return _error(
                404,
                "invalid_request_error",
                f"unknown model {str(model)[:80]!r}; this gateway serves "
                f"{self.config.server.routed_model!r}",
                code="model_not_found",
            )
        tenant = self._tenant(request)
        if tenant is None:
            return _error(401, "authentication_error", "unknown API key for this gateway")
        stream = data.get("stream", False) is True
        params = {
            k: v
            for k, v in data.items()
            if k not in ("messages", "model", "stream", "stream_options")
        }
        try:
            query = ChatQuery(
                data.get("messages"),  # type: ignore[arg-type]  # checked there
                request_id=request_id,
                params=params,
                tenant=tenant,
            )
        except (TypeError, ValueError) as exc:
            return _error(400, "invalid_request_error", f"messages: {exc}")
        if self.config.server.log_queries:
            log.info("request %s messages %s", request_id, json.dumps(query.messages)[:2000])
        with request_span(request_id) as span:
            outcome = await self._serve(query, tenant)
            if span is not None and outcome.answer is not None:
                span.set_attribute("cascade_routing.model", outcome.answer.model)
                span.set_attribute("cascade_routing.cost", outcome.trace.get("cost") or 0.0)
                span.set_attribute("cascade_routing.calls", len(outcome.trace["calls"]))
        elapsed = time.perf_counter() - started
        tel = self.telemetry
        tel.request_seconds.observe(elapsed)
        tel.decision_seconds.observe(max(0.0, elapsed - outcome.trace.pop("_upstream_seconds")))
        if outcome.answer is None:
            assert outcome.error is not None
            tel.decisions.labels(tenant, "none", "error").inc()
            log.warning(
                "request %s failed with %d (%s)", request_id, outcome.status, outcome.error[0]
            )
            return _error(
                outcome.status,
                outcome.error[0],
                outcome.error[1],
                trace=outcome.trace,
                request_id=request_id,
            )
        answer = outcome.answer
        tel.decisions.labels(
            tenant, answer.model, "fallback" if outcome.trace["fallback"] else "ok"
        ).inc()
        self.feedback.served(
            request_id, {"tenant": tenant, "model": answer.model, "cost": outcome.trace["cost"]}
        )
        ext = {
            "request_id": request_id,
            "model": answer.model,
            "upstream_model": answer.upstream_model,
            "cost": outcome.trace["cost"],
            "trace": outcome.trace,
        }
        if stream:
            include_usage = bool((data.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                self._chunks(request_id, answer, ext, include_usage),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        return JSONResponse(_clean(self._completion(request_id, answer, ext)))

    def _usage(self, answer: ServedAnswer) -> dict[str, int]:
        p = answer.prompt_tokens or 0
        c = answer.completion_tokens or 0
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}

    def _completion(
        self, request_id: str, answer: ServedAnswer, ext: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "id": request_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": answer.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer.text},
                    "logprobs": None,
                    "finish_reason": answer.finish_reason or "stop",
                }
            ],
            "usage": self._usage(answer),
            "cascade_routing": ext,
        }

    async def _chunks(
        self, request_id: str, answer: ServedAnswer, ext: dict[str, Any], include_usage: bool
    ) -> AsyncIterator[bytes]:
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None, **extra: Any) -> bytes:
            payload = {
                "id": request_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": answer.model,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
                **extra,
            }
            return b"data: " + json.dumps(_clean(payload)).encode() + b"\n\n"

        yield chunk({"role": "assistant", "content": ""}, None)
        text = answer.text
        size = 64
        for i in range(0, len(text), size):
            yield chunk({"content": text[i : i + size]}, None)
        yield chunk({}, answer.finish_reason or "stop", cascade_routing=ext)
        if include_usage:
            payload = {
                "id": request_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": answer.model,
                "choices": [],
                "usage": self._usage(answer),
            }
            yield b"data: " + json.dumps(payload).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    # ------------------------------------------------------------------ the decision

    def _caller(self, record: _Record, idx: dict[str, int]) -> Any:
        cap = self.config.budget.per_request_cap
        tel = self.telemetry

        async def call(name: str, query: ChatQuery) -> Any:
            if cap is not None:
                est = float(self._ante(query)[idx[name]])
                if record.spent + est > cap:
                    record.calls.append(_Call(name, "refused", 0.0, kind="cost_cap"))
                    raise CostCapError(
                        f"{name} would cost about ${est:.3g}, over the ${cap:.3g} cap with "
                        f"${record.spent:.3g} spent"
                    )
            task = asyncio.current_task()
            if task is not None:
                record.tasks.add(task)
                self.inflight.add(task)
            t0 = time.perf_counter()
            try:
                answer = await self.upstreams.acall_model(name, query)
            except UpstreamError as exc:
                seconds = time.perf_counter() - t0
                record.upstream_seconds += seconds
                record.calls.append(
                    _Call(
                        name,
                        "failed",
                        seconds,
                        kind=exc.kind,
                        http_status=exc.status,
                        attempts=exc.attempts,
                        billed=exc.billed,
                    )
                )
                if exc.billed == "unknown":
                    record.unknown_cost += 1
                    record.unknown_estimate += float(self._ante(query)[idx[name]])
                tel.calls.labels(name, exc.kind).inc()
                tel.failures.labels(name, exc.kind).inc()
                tel.upstream_seconds.labels(name).observe(seconds)
                raise
            except asyncio.CancelledError:
                seconds = time.perf_counter() - t0
                record.upstream_seconds += seconds
                record.calls.append(_Call(name, "cancelled", seconds, billed="unknown"))
                record.unknown_cost += 1
                record.unknown_estimate += float(self._ante(query)[idx[name]])
                tel.calls.labels(name, "cancelled").inc()
                raise
            finally:
                if task is not None:
                    record.tasks.discard(task)
                    self.inflight.discard(task)
            seconds = time.perf_counter() - t0
            record.upstream_seconds += seconds
            record.answers[name] = answer
            known = answer.cost is not None
            record.calls.append(
                _Call(
                    name,
                    "ok",
                    seconds,
                    cost=answer.cost,
                    attempts=answer.attempts,
                    billed="measured" if known else "unknown",
                )
            )
            tel.calls.labels(name, "ok").inc()
            tel.upstream_seconds.labels(name).observe(seconds)
            if not known:
                record.unknown_cost += 1
                record.unknown_estimate += float(self._ante(query)[idx[name]])
                return answer  # the loop charges its own estimate; the trace says unknown
            record.spent += answer.cost  # type: ignore[operator]
            tel.cost.labels(query.tenant, name).inc(answer.cost)  # type: ignore[arg-type]
            return answer, answer.cost

        return call

    async def _serve(self, query: ChatQuery, tenant: str) -> _Outcome:
        strategy = self.strategies[tenant]
        record = _Record(query)
        idx = {m: i for i, m in enumerate(self.models)}
        server = self.config.server
        lam_now = float(strategy.lambdas_[0]) if strategy.lambdas_ is not None else None
        trace: dict[str, Any] = {"tenant": tenant, "lambda": lam_now, "fallback": None}
        steps: list[Any] = []
        result = None
        failure: tuple[int, str, str] | None = None
        try:
            result = await asyncio.wait_for(
                strategy.arun(
                    query,
                    self._caller(record, idx),
                    timeout=server.call_timeout,
                    offload_planning=server.offload_planning,
                ),
                server.deadline,
            )
            steps = result.trace
        except AllModelsFailedError as exc:
            steps = exc.trace
            if record.calls and all(c.status == "refused" for c in record.calls):
                failure = (
                    402,
                    "cost_cap_exceeded",
                    "the per-request cost cap leaves no model to call",
                )
            else:
                failure = (502, "upstream_error", "every model the policy could call failed")
        except asyncio.TimeoutError:
            failure = (504, "timeout", f"no answer within the {server.deadline:g}s deadline")
        except Exception as exc:  # an estimator or the loop failed: contain it
            log.error(
                "request %s: the decision loop failed (%s)", query.request_id, type(exc).__name__
            )
            failure = (500, "internal_error", f"the decision loop failed: {type(exc).__name__}")
        finally:
            # Calls still running (the deadline passed): cancel them and wait for their
            # records, so that the trace is complete and nothing runs on after the response.
            pending = [t for t in record.tasks if not t.done()]
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        trace["steps"] = [asdict(s) for s in steps]
        answer: ServedAnswer | None = None
        if result is not None:
            answer = record.answers.get(result.model or "") or (
                result.answer if isinstance(result.answer, ServedAnswer) else None
            )
        if answer is None and record.answers:
            answer = await self._off_loop(self._best_so_far, query, record)
            trace["fallback"] = "best_so_far"
        if (
            answer is None
            and failure is not None
            and failure[0] in (500, 504)
            and server.fallback_model is not None
        ):
            answer = await self._call_fallback(query, record, idx)
            if answer is not None:
                trace["fallback"] = "fallback_model"
        if failure is not None:
            trace["error"] = failure[2]
        trace.update(await self._off_loop(self._summary, query, record, answer))
        trace["_upstream_seconds"] = record.upstream_seconds
        cost = trace["cost"]
        self.telemetry.request_cost.observe(cost)
        if tenant in self.budgets.controllers:
            # Calls of unknown cost count at their ex-ante estimate for the budget.
            self.budgets.observe(tenant, cost + record.unknown_estimate)
            self._apply_scale(tenant)
        self._publish_lambda(tenant)
        if answer is not None:
            ante = self._ante(query)
            i = idx[self.dearest]
            dearest = record.answers.get(self.dearest)
            counter = (
                dearest.cost
                if dearest is not None and dearest.cost is not None
                else float(ante[i])
            )
            self.telemetry.savings.add(cost, counter)
            if counter > cost:
                self.telemetry.saved.inc(counter - cost)
            return _Outcome(200, answer, trace)
        assert failure is not None
        return _Outcome(failure[0], None, trace, (failure[1], failure[2]))

    async def _off_loop(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)`` (which runs the estimators) in the default executor with
        ``server.offload_planning``, on the event loop otherwise."""
        if not self.config.server.offload_planning:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def _call_fallback(
        self, query: ChatQuery, record: _Record, idx: dict[str, int]
    ) -> ServedAnswer | None:
        name = self.config.server.fallback_model
        assert name is not None
        try:
            value = await asyncio.wait_for(
                self._caller(record, idx)(name, query), self.config.server.call_timeout
            )
        except (UpstreamError, CostCapError, asyncio.TimeoutError):
            return None
        answer = value[0] if isinstance(value, tuple) else value
        return answer if isinstance(answer, ServedAnswer) else None

    def _best_so_far(self, query: ChatQuery, record: _Record) -> ServedAnswer:
        names = list(record.answers)
        try:
            row = [record.answers.get(m) for m in self.models]
            est = self.quality.predict([query], [row])
            mean = np.asarray(getattr(est, "mean", est), dtype=np.float64)[0]
            scores = {m: float(mean[self.models.index(m)]) for m in names}
            if all(math.isfinite(v) for v in scores.values()):
                return record.answers[max(names, key=lambda m: scores[m])]
        except Exception as exc:  # the estimator is what failed: fall back on confidence
            log.info(
                "request %s: best-so-far by confidence (%s)", query.request_id, type(exc).__name__
            )
        return record.answers[max(names, key=lambda m: record.answers[m].token_probability or 0.0)]

    def _summary(
        self, query: ChatQuery, record: _Record, answer: ServedAnswer | None
    ) -> dict[str, Any]:
        """Models tried, final estimates and the runner-up, cost (never the text)."""
        out: dict[str, Any] = {
            "models_tried": [c.model for c in record.calls if c.status != "refused"],
            "calls": [asdict(c) for c in record.calls],
            "cost": record.spent,
            "cost_complete": record.unknown_cost == 0,
            "cost_unknown_estimate": record.unknown_estimate,
            "selected": None if answer is None else answer.model,
        }
        estimates: dict[str, Any] = {}
        try:
            row = [record.answers.get(m) for m in self.models]
            est = self.quality.predict([query], [row])
            mean = np.asarray(getattr(est, "mean", est), dtype=np.float64)[0]
            var = getattr(est, "var", None)
            cost = np.asarray(self.cost.predict([query], [row]), dtype=np.float64)[0]
            for i, m in enumerate(self.models):
                estimates[m] = {
                    "quality": float(mean[i]),
                    "cost": float(cost[i]),
                    "quality_sd": None if var is None else float(np.sqrt(np.asarray(var)[0, i])),
                    "ran": m in record.answers,
                }
        except Exception as exc:
            out["estimates_error"] = type(exc).__name__
        out["estimates"] = estimates
        runner = None
        if estimates and answer is not None:
            pool = [m for m in record.answers if m != answer.model] or [
                m for m in self.models if m != answer.model
            ]
            if pool:
                runner = max(
                    pool,
                    key=lambda m: (
                        estimates[m]["quality"]
                        if math.isfinite(estimates[m]["quality"])
                        else -math.inf
                    ),
                )
        out["runner_up"] = runner
        return out


def _error(
    status: int,
    kind: str,
    message: str,
    *,
    code: str | None = None,
    trace: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> Response:
    body: dict[str, Any] = {
        "error": {"message": message, "type": kind, "param": None, "code": code or kind}
    }
    if trace is not None:
        body["cascade_routing"] = {"request_id": request_id, "trace": trace}
    return JSONResponse(_clean(body), status_code=status)


def _policy_models(policy: str | Path) -> list[str]:
    p = Path(policy)
    try:
        data = json.loads(p.read_text())
        models = data["models"]
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
            raise TypeError("models is not a list of names")
    except FileNotFoundError as exc:
        raise ConfigError(f"the policy file {p} does not exist") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{p} is not a readable policy file ({type(exc).__name__}: {exc})"
        ) from exc
    return models


def build_gateway(
    policy: str | Path,
    config: str | Path | ServeConfig | Mapping[str, Any],
    *,
    environ: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> Gateway:
    """Load and check everything a gateway needs; raises :class:`ConfigError` on any problem
    (a missing API key variable, an unknown model, a policy over other models)."""
    if isinstance(config, ServeConfig):
        cfg = config
    elif isinstance(config, Mapping):
        from .config import parse_config

        cfg = parse_config(config, environ=environ)
    else:
        cfg = load_config(config, environ=environ)
    return Gateway(policy, cfg, **kwargs)
