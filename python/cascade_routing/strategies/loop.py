"""The decision loop against real models: estimate, plan, call, record, until a stop.

:func:`run` (threads, for blocking clients) and :func:`arun` (asyncio) share every step but
the call itself. What each outcome does:

- what a call returns: a :class:`~cascade_routing.answers.ModelAnswer` (its ``cost``
  field is the cost; ``None`` means unknown), the documented tuple ``(answer, cost)``, or a
  bare answer (no cost given: the estimated cost is counted). A 2-tuple is always read as
  ``(answer, cost)``: return a ``ModelAnswer`` to pass a confidence with an answer;
- a model call that raises, times out or returns ``None`` is a **model failure**: the step
  is recorded (``"failed"``, ``"timeout"``, ``"invalid"``), the model is excluded and the
  loop re-plans without it. A timed-out call may still be billed by the provider: its
  estimated cost is counted and ``cost_complete`` is False (never a silent $0);
- a model that answers with a NaN, infinite or negative cost keeps its answer, but the step's
  cost is marked invalid (``"invalid_cost"``) and the estimated cost is counted instead; a
  ``ModelAnswer`` whose ``cost`` is ``None`` is recorded as ``"unknown_cost"`` the same way;
- an **estimator failure** (the estimators raise, or return NaN, a wrong shape or a negative
  variance) is not a model failure: the loop stops at once (``"estimator_failed"``), so a
  broken estimator never makes the loop call (and pay) every model;
- ``max_calls`` and ``max_cost`` cap the calls and the spend of one query: a call that would
  go over a cap is not made (``"call_cap"`` / ``"cost_cap"``); ``deadline`` bounds the whole
  query in seconds: each call's timeout is cut to the time left, and no call starts after it
  (``"deadline"``).

**No paid answer is lost.** When the loop ends without a selection (the estimators failed,
the deadline passed), the result is the best answer so far (``fallback="best_so_far"``): the
answered model the last good estimates rate highest. Without any answer, a configured
``fallback_model`` is called once (``fallback="fallback_model"``) unless a cap or the deadline
stopped the loop; only then do :class:`EstimatorFailedError` or :class:`AllModelsFailedError`
(both carrying the trace) reach the caller.

In :func:`arun`, a synchronous ``call_model`` runs in an executor (the loop's default, or the
``executor`` given), so it neither blocks the event loop nor escapes the timeout, and
cancelling ``arun`` cancels the call in flight (an async call is cancelled and awaited; a
synchronous one cannot be interrupted by Python and runs to its end in its worker);
``offload_planning=True`` runs the estimators and the search in that executor as well. In
:func:`run`, a call with a timeout runs in a daemon thread: a hung call never blocks the
interpreter's exit; give the client its own timeout too so that the thread ends.

The trace never holds the query; log lines name the model and the status only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..answers import ModelAnswer
from ..validation import check_int, check_number, is_real

if TYPE_CHECKING:
    from .base import Plan, Strategy

log = logging.getLogger("cascade_routing.strategies")

#: How long a cancelled async call is awaited for its clean-up (seconds).
_CANCEL_GRACE = 5.0


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

    ``status`` is one of ``ok``, ``stop``, ``failed``, ``timeout`` (``actual_cost`` is
    ``None``; the estimated cost is counted), ``invalid`` (the model returned no answer),
    ``invalid_cost`` (an answer with an unusable cost: ``actual_cost`` is ``None``),
    ``unknown_cost`` (a :class:`~cascade_routing.answers.ModelAnswer` without a cost),
    ``estimator_failed``, and ``call_cap``, ``cost_cap`` and ``deadline`` (the model was not
    called). A call of the ``fallback_model`` has NaN ``utility`` and ``lam`` and an empty
    ``supermodel`` (no plan chose it).
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
    invalid, unknown or timed-out one (``cost_complete`` is then False). ``fallback`` is
    ``None`` for a normal selection, ``"best_so_far"`` when the loop ended early (the
    estimators failed, the deadline passed) and the best answer already received was
    returned, and ``"fallback_model"`` when the configured fallback model answered.
    """

    answer: Any
    model: str | None
    answers: dict[str, Any]
    cost: float
    trace: list[Step] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    cost_complete: bool = True
    fallback: str | None = None


def _parse_response(name: str, value: Any) -> tuple[Any, float | None, str, str | None]:
    """``(answer, cost or None, status, why the cost is unusable)``; ValueError if no answer."""
    cost: float | None = None
    status, problem = "ok", None
    if isinstance(value, ModelAnswer):
        answer = value
        cost = value.cost  # checked by ModelAnswer: finite and >= 0, or None
        if cost is None:
            status, problem = "unknown_cost", f"{name} answered without a cost (cost=None)"
    elif isinstance(value, tuple) and len(value) == 2:
        answer, raw = value
        if not is_real(raw):
            status, problem = (
                "invalid_cost",
                f"{name} returned a cost of type {type(raw).__name__}",
            )
        else:
            f = float(raw)
            if not math.isfinite(f) or f < 0:
                status, problem = "invalid_cost", f"{name} returned an invalid cost {f!r}"
            else:
                cost = f
    else:
        answer = value
    if answer is None:
        raise ValueError(f"{name} returned no answer (None)")
    return answer, cost, status, problem


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
        deadline: Any = None,
        fallback_model: Any = None,
    ) -> None:
        started = time.perf_counter()
        if not callable(call_model):
            raise TypeError(
                "call_model must be a callable call_model(name, query) returning the answer "
                f"or (answer, cost), got {type(call_model).__name__}"
            )
        if timeout is not None and check_number(timeout, "timeout", 0.0) <= 0:
            raise ValueError("timeout must be positive seconds, or None for no timeout")
        if deadline is not None and check_number(deadline, "deadline", 0.0) <= 0:
            raise ValueError(
                "deadline must be positive seconds for the whole query, or None for none"
            )
        strategy._check_fitted()
        if fallback_model is not None and (
            not isinstance(fallback_model, str) or fallback_model not in strategy._index
        ):
            raise ValueError(
                f"fallback_model must be one of the strategy's models {list(strategy.models)}, "
                f"got {fallback_model!r}"
            )
        self.s = strategy
        self.query = query
        self.k = len(strategy.models)
        self.timeout = None if timeout is None else float(timeout)
        self.deadline = None if deadline is None else float(deadline)
        self.t_end = None if deadline is None else started + float(deadline)
        self.max_calls = None if max_calls is None else check_int(max_calls, "max_calls", 1)
        self.max_cost = None if max_cost is None else check_number(max_cost, "max_cost", 0.0)
        self.fallback_model: str | None = fallback_model
        self.answers: list[Any] = [None] * self.k
        self.trace: list[Step] = []
        self.failed: dict[str, str] = {}
        self.excluded: set[int] = set()
        self.total = 0.0
        self.calls = 0
        self.cost_complete = True
        self.fallback: str | None = None
        # The last state the estimators digested: (answers, ran, post-hoc means) for selection.
        self.good: tuple[list[Any], Any, Any] | None = None
        self.done = False
        self.error: BaseException | None = None

    @property
    def uses_threads(self) -> bool:
        """Whether a synchronous call must run in a thread (a timeout or a deadline)."""
        return self.timeout is not None or self.t_end is not None

    def call_timeout(self) -> float | None:
        """The timeout of the next call: ``timeout`` cut to the time left before the deadline."""
        if self.t_end is None:
            return self.timeout
        left = max(0.0, self.t_end - time.perf_counter())
        return left if self.timeout is None else min(self.timeout, left)

    # ------------------------------------------------------------------ planning

    def next_plan(self) -> Plan | None:
        """Estimate and plan the next call; ``None`` once the loop must end."""
        if self.done:
            return None
        s, idx = self.s, len(self.trace)
        excluded = frozenset(self.excluded)
        ran = s._check_state(self.answers)
        try:
            est, cst = s._estimate_for_plan([self.query], [self.answers], excluded)
            s._ready_decider(ran, excluded)  # a run-set's uncertainty comes from the estimator
        except Exception as exc:  # an estimator failure: stop, never call more models
            self._estimator_failed(idx, exc)
            return None
        self.good = (list(self.answers), ran, est.mean[0].copy())
        # _plan_internal without checking the answers row a second time.
        plan = s._plan_estimated(self.query, ran, est, cst, excluded, s._check_fitted())
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
        if self.t_end is not None and time.perf_counter() >= self.t_end:
            self._end(idx, plan, "deadline", f"the query's deadline of {self.deadline:g}s passed")
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

    # ------------------------------------------------------------------ the fallback model

    def fallback_plan(self) -> Plan | None:
        """The call of ``fallback_model`` when the loop ended with no answer at all, unless a
        cap or the deadline ended it or that model already failed."""
        name = self.fallback_model
        if name is None or any(a is not None for a in self.answers) or name in self.failed:
            return None
        if self.trace and self.trace[-1].status in ("call_cap", "cost_cap", "deadline"):
            return None
        from .base import Plan

        j = self.s._index[name]
        return Plan(j, name, (), (), math.nan, math.nan, math.nan)

    # ------------------------------------------------------------------ recording

    def record(
        self,
        plan: Plan,
        value: Any,
        error: BaseException | None,
        timed_out: bool,
        started: float,
        *,
        fallback: bool = False,
    ) -> None:
        nm = plan.index
        name = self.s.models[nm]
        seconds = time.perf_counter() - started
        self.calls += 1
        status, msg, actual = "ok", None, None
        charged = True  # the provider may bill the call
        if timed_out:
            status = "timeout"
            msg = "the call timed out (it may be billed: its estimated cost is counted)"
        elif error is not None:
            status, msg, charged = "failed", f"{type(error).__name__}: {error}", False
        else:
            try:
                answer, actual, status, msg = _parse_response(name, value)
            except ValueError as exc:
                status, msg, charged = "invalid", str(exc), False
            else:
                self.answers[nm] = answer
        if charged:
            if actual is not None:
                self.total += actual
            else:
                known = (status == "ok") and math.isfinite(plan.estimated_cost)
                if status != "ok" or not known:
                    self.cost_complete = False
                if math.isfinite(plan.estimated_cost):
                    self.total += plan.estimated_cost
        if status not in ("ok", "invalid_cost", "unknown_cost"):
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
        if fallback and self.answers[nm] is not None:
            self.fallback = "fallback_model"

    # ------------------------------------------------------------------ the result

    def _best_so_far(self) -> str | None:
        """The answered model the last good estimates rate highest (the first answer
        received when the estimators never worked)."""
        answered = [j for j, a in enumerate(self.answers) if a is not None]
        if not answered:
            return None
        good = self.good
        if good is None:
            first = next(st.model for st in self.trace if st.model and st.status == "ok")
            return first
        mean = dict(zip(self.s.order_.tolist(), good[2].tolist()))

        def score(j: int) -> float:
            v = float(mean[j])
            return v if math.isfinite(v) else -math.inf

        return self.s.models[max(answered, key=score)]

    def finish(self) -> RunResult:
        s = self.s
        answered = {m: a for m, a in zip(s.models, self.answers) if a is not None}
        good = self.good
        chosen = None
        if self.fallback == "fallback_model":
            chosen = self.fallback_model
        elif good is not None and any(a is not None for a in good[0]):
            chosen = s._select_from(good[1], good[2])
        early = self.error is not None or (
            bool(self.trace) and self.trace[-1].status == "deadline"
        )
        if chosen is None and answered:
            chosen = self._best_so_far()
            early = True
        if chosen is not None and early and self.fallback is None:
            self.fallback = "best_so_far"
        if chosen is None:
            error = self.error
            if error is not None:
                raise EstimatorFailedError(
                    "the estimators failed before any answer could be selected "
                    f"({type(error).__name__}: {error}); see the trace",
                    self.trace,
                ) from error
            last = self.trace[-1].status if self.trace else "stop"
            if last in ("call_cap", "cost_cap", "deadline"):
                what = "deadline" if last == "deadline" else "cap"
                why = f"the per-query {what} stopped the loop first ({self.trace[-1].error})"
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
            self.fallback,
        )


def _call_in_thread(
    call_model: Callable[[str, Any], Any], name: str, query: Any, timeout: float | None
) -> tuple[Any, BaseException | None, bool]:
    """``(value, error, timed_out)`` of one call in a daemon thread (a hung call never blocks
    the interpreter's exit; Python cannot stop it, so it runs on until it returns)."""
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def work() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(call_model(name, query))
        except BaseException as exc:  # handed to the loop, which records it
            future.set_exception(exc)

    threading.Thread(target=work, name=f"cascade-routing-call-{name}", daemon=True).start()
    try:
        return future.result(timeout=timeout), None, False
    except concurrent.futures.TimeoutError:
        if not future.done():
            return None, None, True
        return None, future.exception(), False
    except Exception as exc:  # raised by the model itself
        return None, exc, False


def _call_sync(
    state: _Run, call_model: Callable[[str, Any], Any], name: str, query: Any
) -> tuple[Any, BaseException | None, bool]:
    if not state.uses_threads:
        try:
            return call_model(name, query), None, False
        except Exception as exc:  # the user's model failed: record and re-plan
            return None, exc, False
    return _call_in_thread(call_model, name, query, state.call_timeout())


def run(
    strategy: Strategy,
    query: Any,
    call_model: Callable[[str, Any], Any],
    *,
    timeout: float | None = None,
    max_calls: int | None = None,
    max_cost: float | None = None,
    deadline: float | None = None,
    fallback_model: str | None = None,
) -> RunResult:
    """Decide, call ``call_model(name, query)``, record, re-plan, until the strategy stops.

    ``call_model`` returns a :class:`~cascade_routing.answers.ModelAnswer` (its
    ``cost`` is the cost), ``(answer, cost)`` with the actual cost, or the bare answer. A
    call that raises, times out (``timeout`` seconds) or returns ``None`` is recorded as
    failed and that model is excluded; the loop re-plans without it. ``max_calls`` caps the
    model calls and ``max_cost`` the spend (actual costs, estimated where unknown) of this
    query: a call whose estimated cost would take the spend over ``max_cost`` is not made.
    ``deadline`` (seconds) bounds the whole query. ``fallback_model`` is called once when
    the loop ends with no answer at all (see the module docstring).

    Raises :class:`AllModelsFailedError` when no model produced an answer and
    :class:`EstimatorFailedError` when the estimators failed before any answer was
    received; both carry the ``trace``.
    """
    state = _Run(
        strategy, query, call_model, timeout, max_calls, max_cost, deadline, fallback_model
    )
    for _ in range(2 * state.k + 1):
        plan = state.next_plan()
        if plan is None:
            break
        assert plan.model is not None
        started = time.perf_counter()
        value, error, timed_out = _call_sync(state, call_model, plan.model, query)
        state.record(plan, value, error, timed_out, started)
    plan = state.fallback_plan()
    if plan is not None:
        assert plan.model is not None
        started = time.perf_counter()
        value, error, timed_out = _call_sync(state, call_model, plan.model, query)
        state.record(plan, value, error, timed_out, started, fallback=True)
    return state.finish()


def _is_async(fn: Any) -> bool:
    """Whether ``fn(...)`` returns a coroutine (an ``async def`` function or callable)."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


async def _cancel(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and give it a bounded time to clean up (no task is left behind)."""
    task.cancel()
    await asyncio.wait({task}, timeout=_CANCEL_GRACE)
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" warning


async def _acall(
    state: _Run,
    call_model: Callable[[str, Any], Any],
    name: str,
    query: Any,
    is_async: bool,
    executor: concurrent.futures.Executor | None,
) -> tuple[Any, BaseException | None, bool]:
    """``(value, error, timed_out)`` of one call; cancelling it cancels the call in flight."""
    loop = asyncio.get_running_loop()
    try:
        if is_async:
            pending: Awaitable[Any] = call_model(name, query)
        else:
            pending = loop.run_in_executor(executor, call_model, name, query)
        task = asyncio.ensure_future(pending)
    except Exception as exc:  # the call raised before returning an awaitable
        return None, exc, False
    try:
        for _ in range(2):  # a synchronous client may return an awaitable: await it too
            done, _ = await asyncio.wait({task}, timeout=state.call_timeout())
            if task not in done:
                await _cancel(task)
                return None, None, True
            try:
                value = task.result()
            except Exception as exc:  # the user's model failed: record and re-plan
                return None, exc, False
            if not inspect.isawaitable(value):
                return value, None, False
            task = asyncio.ensure_future(value)
        return None, TypeError("call_model returned an awaitable of an awaitable"), False
    except asyncio.CancelledError:  # arun itself is cancelled: so is the call
        await asyncio.shield(_cancel(task))
        raise


async def arun(
    strategy: Strategy,
    query: Any,
    call_model: Callable[[str, Any], Awaitable[Any] | Any],
    *,
    timeout: float | None = None,
    max_calls: int | None = None,
    max_cost: float | None = None,
    deadline: float | None = None,
    fallback_model: str | None = None,
    executor: concurrent.futures.Executor | None = None,
    offload_planning: bool = False,
) -> RunResult:
    """:func:`run` for asyncio; ``call_model`` may be async or not.

    A synchronous ``call_model`` runs in ``executor`` (default: the event loop's default
    executor, which is bounded), so it honours the timeout and never blocks the event loop.
    Cancelling ``arun`` cancels the call in flight. With ``offload_planning``, each step's
    estimates and search run in ``executor`` too, so that heavy estimators (a scikit-learn
    model, say) do not stall the event loop; the estimators must then be thread-safe. It
    costs a thread hand-off per step, so cheap estimators are better planned in place.
    """
    state = _Run(
        strategy, query, call_model, timeout, max_calls, max_cost, deadline, fallback_model
    )
    if not isinstance(offload_planning, bool):
        raise TypeError(f"offload_planning must be True or False, got {offload_planning!r}")
    is_async = _is_async(call_model)
    loop = asyncio.get_running_loop()
    for _ in range(2 * state.k + 1):
        if offload_planning:
            plan = await loop.run_in_executor(executor, state.next_plan)
        else:
            plan = state.next_plan()
        if plan is None:
            break
        assert plan.model is not None
        started = time.perf_counter()
        value, error, timed_out = await _acall(
            state, call_model, plan.model, query, is_async, executor
        )
        state.record(plan, value, error, timed_out, started)
    plan = state.fallback_plan()
    if plan is not None:
        assert plan.model is not None
        started = time.perf_counter()
        value, error, timed_out = await _acall(
            state, call_model, plan.model, query, is_async, executor
        )
        state.record(plan, value, error, timed_out, started, fallback=True)
    return state.finish()


__all__ = [
    "AllModelsFailedError",
    "EstimatorFailedError",
    "RunResult",
    "Step",
    "arun",
    "run",
]
