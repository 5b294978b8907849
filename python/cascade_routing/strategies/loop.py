"""The decision loop against real models: estimate, plan, call, record, until a stop.

:func:`run` (threads, for blocking clients) and :func:`arun` (asyncio) share every step but
the call itself. What each outcome does:

- a model call that raises, times out or returns ``None`` is a **model failure**: the step
  is recorded (``"failed"``, ``"timeout"``, ``"invalid"``), the model is excluded and the
  loop re-plans without it;
- a model that answers with a NaN, infinite or negative cost keeps its answer, but the step's
  cost is marked invalid (``"invalid_cost"``) and the estimated cost is counted instead;
- an **estimator failure** (the estimators raise, or return NaN, a wrong shape or a negative
  variance) is not a model failure: the loop stops at once (``"estimator_failed"``) and
  returns the best answer estimated so far, or raises :class:`EstimatorFailedError` if there
  is none, so a broken estimator never makes the loop call (and pay) every model;
- ``max_calls`` and ``max_cost`` cap the calls and the spend of one query: a call that would
  go over a cap is not made (``"call_cap"`` / ``"cost_cap"``).

The trace never holds the query; log lines name the model and the status only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..validation import check_int, check_number, is_real

if TYPE_CHECKING:
    from .base import Plan, Strategy

log = logging.getLogger("cascade_routing.strategies")


class AllModelsFailedError(RuntimeError):
    """No model produced an answer for the query (they failed, or a cap allowed no call);
    ``trace`` says why."""

    def __init__(self, message: str, trace: list[Step]) -> None:
        super().__init__(message)
        self.trace = trace


class EstimatorFailedError(RuntimeError):
    """The estimators failed before any answer could be selected; ``trace`` says where.

    ``__cause__`` is the estimator's exception.
    """

    def __init__(self, message: str, trace: list[Step]) -> None:
        super().__init__(message)
        self.trace = trace


@dataclass(frozen=True)
class Step:
    """One step of :meth:`Strategy.run`: the plan made and the model call it led to.

    ``status`` is one of ``ok``, ``stop``, ``failed``, ``timeout``, ``invalid`` (the model
    returned no answer), ``invalid_cost`` (an answer with an unusable cost: ``actual_cost``
    is ``None``), ``estimator_failed``, ``call_cap`` and ``cost_cap`` (the model was not
    called).
    """

    index: int
    model: str | None
    supermodel: tuple[str, ...]
    utility: float
    lam: float
    estimated_cost: float
    actual_cost: float | None = None
    status: str = "ok"
    error: str | None = None
    seconds: float = 0.0


@dataclass
class RunResult:
    """Outcome of :meth:`Strategy.run`: the selected answer and everything that led to it.

    ``cost`` is the sum of the actual costs, with the estimated cost in place of each
    invalid one (``cost_complete`` is then False).
    """

    answer: Any
    model: str | None
    answers: dict[str, Any]
    cost: float
    trace: list[Step] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    cost_complete: bool = True


def _parse_response(name: str, value: Any) -> tuple[Any, float | None, str | None]:
    """``(answer, cost or None, why the cost is unusable)``; ValueError if no answer."""
    cost: float | None = None
    problem = None
    if isinstance(value, tuple) and len(value) == 2:
        answer, raw = value
        if not is_real(raw):
            problem = f"{name} returned a cost of type {type(raw).__name__}"
        else:
            f = float(raw)
            if not math.isfinite(f) or f < 0:
                problem = f"{name} returned an invalid cost {f!r}"
            else:
                cost = f
    else:
        answer = value
    if answer is None:
        raise ValueError(f"{name} returned no answer (None)")
    return answer, cost, problem


class _Run:
    """The state of one query's loop (shared by :func:`run` and :func:`arun`)."""

    def __init__(
        self,
        strategy: Strategy,
        query: Any,
        call_model: Any,
        timeout: Any,
        max_calls: Any,
        max_cost: Any,
    ) -> None:
        if not callable(call_model):
            raise TypeError(
                "call_model must be a callable call_model(name, query) returning the answer "
                f"or (answer, cost), got {type(call_model).__name__}"
            )
        if timeout is not None and check_number(timeout, "timeout", 0.0) <= 0:
            raise ValueError("timeout must be positive seconds, or None for no timeout")
        strategy._check_fitted()
        self.s = strategy
        self.query = query
        self.k = len(strategy.models)
        self.timeout = None if timeout is None else float(timeout)
        self.max_calls = None if max_calls is None else check_int(max_calls, "max_calls", 1)
        self.max_cost = None if max_cost is None else check_number(max_cost, "max_cost", 0.0)
        self.answers: list[Any] = [None] * self.k
        self.trace: list[Step] = []
        self.failed: dict[str, str] = {}
        self.excluded: set[int] = set()
        self.total = 0.0
        self.calls = 0
        self.cost_complete = True
        # The last state the estimators digested: (answers, ran, post-hoc means) for selection.
        self.good: tuple[list[Any], Any, Any] | None = None
        self.done = False
        self.error: BaseException | None = None

    # ------------------------------------------------------------------ planning

    def next_plan(self) -> Plan | None:
        """Estimate and plan the next call; ``None`` once the loop must end."""
        if self.done:
            return None
        s, idx = self.s, len(self.trace)
        try:
            est, cst = s._estimate([self.query], [self.answers])
        except Exception as exc:  # an estimator failure: stop, never call more models
            self._estimator_failed(idx, exc)
            return None
        ran = s._check_state(self.answers)
        self.good = (list(self.answers), ran, est.mean[0].copy())
        plan = s._plan_internal(self.query, self.answers, est, cst, frozenset(self.excluded))
        if plan.stop:
            self._end(idx, plan, "stop", None)
            return None
        if self.max_calls is not None and self.calls >= self.max_calls:
            self._end(idx, plan, "call_cap", f"max_calls={self.max_calls} reached")
            return None
        if self.max_cost is not None and self.total + plan.estimated_cost > self.max_cost:
            self._end(
                idx,
                plan,
                "cost_cap",
                f"the estimated cost {plan.estimated_cost:.6g} would take the spend "
                f"{self.total:.6g} over max_cost={self.max_cost:.6g}",
            )
            return None
        return plan

    def _end(self, idx: int, plan: Plan, status: str, why: str | None) -> None:
        est = 0.0 if status == "stop" else plan.estimated_cost
        model = None if status == "stop" else plan.model
        self.trace.append(
            Step(idx, model, plan.supermodel, plan.utility, plan.lam, est, None, status, why)
        )
        if status != "stop":
            log.info("model %s not called: %s", model, status)
        self.done = True

    def _estimator_failed(self, idx: int, exc: BaseException) -> None:
        msg = f"{type(exc).__name__}: {exc}"
        self.trace.append(
            Step(idx, None, (), math.nan, math.nan, 0.0, None, "estimator_failed", msg)
        )
        log.warning("the estimators failed after %d model answers; stopping", self.calls)
        self.error = exc
        self.done = True

    # ------------------------------------------------------------------ recording

    def record(
        self,
        plan: Plan,
        value: Any,
        error: BaseException | None,
        timed_out: bool,
        started: float,
    ) -> None:
        nm = plan.index
        name = self.s.models[nm]
        seconds = time.perf_counter() - started
        self.calls += 1
        status, msg, actual = "ok", None, None
        if timed_out:
            status, msg = "timeout", "the call timed out"
        elif error is not None:
            status, msg = "failed", f"{type(error).__name__}: {error}"
        else:
            try:
                answer, actual, problem = _parse_response(name, value)
            except ValueError as exc:
                status, msg = "invalid", str(exc)
            else:
                self.answers[nm] = answer
                if problem is not None:
                    status, msg = "invalid_cost", problem
                    self.cost_complete = False
        if status in ("ok", "invalid_cost"):
            self.total += plan.estimated_cost if actual is None else actual
        else:
            self.failed[name] = msg or status
            self.excluded.add(nm)
        if status != "ok":
            log.warning("model %s: %s", name, status)
        self.trace.append(
            Step(
                len(self.trace),
                name,
                plan.supermodel,
                plan.utility,
                plan.lam,
                plan.estimated_cost,
                actual,
                status,
                msg,
                seconds,
            )
        )

    # ------------------------------------------------------------------ the result

    def finish(self) -> RunResult:
        s = self.s
        answered = {m: a for m, a in zip(s.models, self.answers) if a is not None}
        good = self.good
        chosen = None
        if good is not None and any(a is not None for a in good[0]):
            chosen = s._select_from(good[1], good[2])
        if chosen is None:
            error = self.error
            if error is not None:
                raise EstimatorFailedError(
                    "the estimators failed before any answer could be selected "
                    f"({type(error).__name__}: {error}); see the trace",
                    self.trace,
                ) from error
            last = self.trace[-1].status if self.trace else "stop"
            if last in ("call_cap", "cost_cap"):
                why = f"the per-query cap stopped the loop first ({self.trace[-1].error})"
            else:
                why = f"{len(self.failed)} failed: " + "; ".join(
                    f"{m}: {e}" for m, e in self.failed.items()
                )
            raise AllModelsFailedError(
                f"no model produced an answer for this query ({why})", self.trace
            )
        return RunResult(
            self.answers[s._index[chosen]],
            chosen,
            answered,
            self.total,
            self.trace,
            self.failed,
            self.cost_complete,
        )


def run(
    strategy: Strategy,
    query: Any,
    call_model: Callable[[str, Any], Any],
    *,
    timeout: float | None = None,
    max_calls: int | None = None,
    max_cost: float | None = None,
) -> RunResult:
    """Decide, call ``call_model(name, query)``, record, re-plan, until the strategy stops.

    ``call_model`` returns the answer, or ``(answer, cost)`` with the actual cost. A call
    that raises, times out (``timeout`` seconds) or returns ``None`` is recorded as failed
    and that model is excluded; the loop re-plans without it. ``max_calls`` caps the model
    calls and ``max_cost`` the spend (actual costs, estimated where unknown) of this query:
    a call whose estimated cost would take the spend over ``max_cost`` is not made. See the
    module docstring for estimator failures and invalid costs.

    Raises :class:`AllModelsFailedError` when no model produced an answer and
    :class:`EstimatorFailedError` when the estimators failed before any answer could be
    selected; both carry the ``trace``.
    """
    state = _Run(strategy, query, call_model, timeout, max_calls, max_cost)
    pool = (
        concurrent.futures.ThreadPoolExecutor(max_workers=1) if state.timeout is not None else None
    )
    try:
        for _ in range(2 * state.k + 1):
            plan = state.next_plan()
            if plan is None:
                break
            assert plan.model is not None
            started = time.perf_counter()
            value, error, timed_out = None, None, False
            if pool is None:
                try:
                    value = call_model(plan.model, query)
                except Exception as exc:  # the user's model failed: record and re-plan
                    error = exc
            else:
                future = pool.submit(call_model, plan.model, query)
                try:
                    value = future.result(timeout=state.timeout)
                except Exception as exc:
                    if future.done():
                        error = exc  # raised by the model itself
                    else:
                        timed_out = True
                        # A hung call keeps its thread; later calls get a fresh one.
                        pool.shutdown(wait=False, cancel_futures=True)
                        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
            state.record(plan, value, error, timed_out, started)
    finally:
        if pool is not None:
            pool.shutdown(wait=False)
    return state.finish()


async def arun(
    strategy: Strategy,
    query: Any,
    call_model: Callable[[str, Any], Awaitable[Any] | Any],
    *,
    timeout: float | None = None,
    max_calls: int | None = None,
    max_cost: float | None = None,
) -> RunResult:
    """:func:`run` for asynchronous model calls (``call_model`` may be async or not)."""
    state = _Run(strategy, query, call_model, timeout, max_calls, max_cost)
    for _ in range(2 * state.k + 1):
        plan = state.next_plan()
        if plan is None:
            break
        assert plan.model is not None
        started = time.perf_counter()
        value, error, timed_out = None, None, False
        try:
            result = call_model(plan.model, query)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                done, _ = await asyncio.wait({task}, timeout=state.timeout)
                if task in done:
                    value = task.result()
                else:
                    timed_out = True
                    task.cancel()
            else:
                value = result
        except Exception as exc:  # the user's model failed: record and re-plan
            error = exc
        state.record(plan, value, error, timed_out, started)
    return state.finish()


__all__ = [
    "AllModelsFailedError",
    "EstimatorFailedError",
    "RunResult",
    "Step",
    "arun",
    "run",
]
