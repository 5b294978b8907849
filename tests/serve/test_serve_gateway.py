"""The gateway as a real server on 127.0.0.1, driven with the official openai client."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from _serve_fakes import (
    MODELS,
    PRICES,
    FakeUpstream,
    ServerThread,
    fake_env,
    upstream_config,
    write_policy,
)

from cascade_routing.serve import build_gateway
from cascade_routing.serve.estimators import ConfidencePriorQuality

MARKER = "quokka-7781"
MESSAGES = [{"role": "user", "content": f"Which is larger, 7 or 9? {MARKER}"}]


@contextlib.contextmanager
def stack(
    tmp_path: Path,
    *,
    lam: float = 100.0,
    texts: dict[str, str] | None = None,
    quality_estimator: Any = None,
    env: dict[str, str] | None = None,
    **sections: Any,
) -> Iterator[Any]:
    """Three fake upstreams and a gateway in front of them; yields a namespace."""
    texts = texts or {"small": "nine", "medium": "it is nine", "large": "9 is larger"}
    policy = write_policy(tmp_path / "policy.json", lam=lam)
    with contextlib.ExitStack() as es:
        fakes = {
            m: es.enter_context(FakeUpstream(m, text=texts[m], logprob=-0.05)) for m in MODELS
        }
        cfg = upstream_config(fakes, **sections)
        gw = build_gateway(
            policy,
            cfg,
            environ={**fake_env(MODELS), **(env or {})},
            quality_estimator=quality_estimator,
        )
        srv = es.enter_context(ServerThread(gw.app(), lifespan="on"))
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0, timeout=20)
        es.callback(client.close)

        class NS:
            pass

        ns = NS()
        ns.fakes, ns.gateway, ns.server, ns.client, ns.url = fakes, gw, srv, client, srv.url
        yield ns


def ext(response: Any) -> dict[str, Any]:
    return response.model_extra["cascade_routing"]


def measured(fake: FakeUpstream, body: dict[str, Any], name: str) -> float:
    usage = fake.completion(body)["usage"]
    p_in, p_out = PRICES[name]
    return usage["prompt_tokens"] * p_in + usage["completion_tokens"] * p_out


def test_completion_keeps_the_openai_shape_and_adds_model_cost_and_trace(tmp_path):
    with stack(tmp_path) as s:
        r = s.client.chat.completions.create(model="cascade-routing", messages=MESSAGES)
    e = ext(r)
    trace = e["trace"]
    tried = trace["models_tried"]
    assert tried and r.model == e["model"] == trace["selected"] in tried
    assert r.choices[0].message.content == s.fakes[r.model].text
    assert r.choices[0].finish_reason == "stop" and r.object == "chat.completion"
    # The cost is the sum of usage × price of every call, as the upstreams reported them.
    expected = sum(measured(s.fakes[m], s.fakes[m].requests[0], m) for m in tried)
    assert e["cost"] == pytest.approx(expected, rel=1e-12)
    assert trace["lambda"] == pytest.approx(100.0)
    assert set(trace["estimates"]) == set(MODELS)
    assert trace["runner_up"] in MODELS and trace["runner_up"] != r.model
    assert [st["model"] for st in trace["steps"] if st["status"] == "ok"] == tried
    assert r.usage.completion_tokens == len(s.fakes[r.model].text.split(" "))


def test_streaming_sends_the_accepted_answer_then_done(tmp_path):
    with stack(
        tmp_path, texts={"small": "x " * 100, "medium": "y " * 100, "large": "z " * 100}
    ) as s:
        chunks = list(
            s.client.chat.completions.create(
                model="cascade-routing",
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(final) == 1
    e = final[0].model_extra["cascade_routing"]
    assert text == s.fakes[e["model"]].text
    assert len([c for c in chunks if c.choices]) >= 4  # role, several pieces, final
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(text.split(" "))  # the fake's tokens


@pytest.mark.parametrize("failure", ["500", "malformed", "badshape", "hang"])
def test_a_failing_model_is_recorded_and_another_answers(tmp_path, failure):
    with stack(tmp_path) as s:
        first = s.client.chat.completions.create(model="cascade-routing", messages=MESSAGES)
        victim = ext(first)["trace"]["models_tried"][0]
        s.fakes[victim].default = failure
        t0 = time.perf_counter()
        r = s.client.chat.completions.create(model="cascade-routing", messages=MESSAGES)
        elapsed = time.perf_counter() - t0
    trace = ext(r)["trace"]
    calls = [c for c in trace["calls"] if c["model"] == victim]
    if failure == "hang":  # the loop's 3 s call timeout cancels the retried 2 s attempts
        assert calls and calls[0]["status"] == "cancelled"
    else:
        kind = {"500": "http_status", "malformed": "malformed", "badshape": "malformed"}
        assert calls and calls[0]["status"] == "failed"
        assert calls[0]["kind"] == kind[failure]
    assert r.model != victim and r.choices[0].message.content == s.fakes[r.model].text
    step = [st for st in trace["steps"] if st["model"] == victim]
    assert step and step[0]["status"] in ("failed", "timeout")
    if failure == "hang":
        assert trace["cost_complete"] is False and trace["cost_unknown_estimate"] > 0
        assert elapsed < 8.0


def test_429_is_retried_inside_the_call(tmp_path):
    with stack(tmp_path) as s:
        first = s.client.chat.completions.create(model="cascade-routing", messages=MESSAGES)
        victim = ext(first)["trace"]["models_tried"][0]
        s.fakes[victim].script.append(("429", 0.2))
        r = s.client.chat.completions.create(model="cascade-routing", messages=MESSAGES)
    call = [c for c in ext(r)["trace"]["calls"] if c["model"] == victim][0]
    assert call["status"] == "ok" and call["attempts"] == 2


def test_every_upstream_failing_gives_502_with_the_trace(tmp_path):
    with stack(tmp_path) as s:
        for f in s.fakes.values():
            f.default = "500"
        with pytest.raises(openai.APIStatusError) as info:
            s.client.chat.completions.create(model="cascade-routing", messages=MESSAGES)
    assert info.value.status_code == 502
    body = info.value.response.json()
    trace = body["cascade_routing"]["trace"]
    assert sorted(trace["models_tried"]) == sorted(MODELS)
    assert all(c["status"] == "failed" and c["http_status"] == 500 for c in trace["calls"])
    assert body["error"]["type"] == "upstream_error"


def test_deadline_returns_the_answer_already_paid_for(tmp_path):
    with stack(tmp_path, lam=0.0, server={"deadline": 1.5, "call_timeout": 5.0}) as s:
        # λ = 0: the policy calls every model; the second one hangs past the deadline.
        first = s.client.chat.completions.create(model="cascade-routing", messages=MESSAGES)
        order = ext(first)["trace"]["models_tried"]
        assert len(order) == 3
        s.fakes[order[1]].default = "hang"
        t0 = time.perf_counter()
        r = s.client.chat.completions.create(model="cascade-routing", messages=MESSAGES)
        elapsed = time.perf_counter() - t0
        assert not s.gateway.inflight
    trace = ext(r)["trace"]
    assert r.model == order[0] and trace["fallback"] == "best_so_far"
    assert "deadline" in trace["error"] and 1.4 < elapsed < 3.0
    cancelled = [c for c in trace["calls"] if c["model"] == order[1]]
    assert cancelled[0]["status"] == "cancelled" and cancelled[0]["billed"] == "unknown"


def test_deadline_with_nothing_paid_gives_504(tmp_path):
    with stack(tmp_path, server={"deadline": 1.0, "call_timeout": 5.0}) as s:
        for f in s.fakes.values():
            f.default = "hang"
        with pytest.raises(openai.APIStatusError) as info:
            s.client.chat.completions.create(model="cascade-routing", messages=MESSAGES)
    assert info.value.status_code == 504
    assert info.value.response.json()["cascade_routing"]["trace"]["calls"]


class FailsAfterFirstAnswer(ConfidencePriorQuality):
    """Raises (or returns NaN) once any model has answered."""

    def __init__(self, mode: str) -> None:
        super().__init__([0.55, 0.7, 0.85], [0.2] * 3, weight=0.8, post_sd=0.1)
        self.mode = mode

    def predict(self, queries, answers):
        est = super().predict(queries, answers)
        if any(a is not None for row in answers for a in row):
            if self.mode == "raise":
                raise KeyError("error payload")
            est.mean[:] = np.nan
        return est


@pytest.mark.parametrize("mode", ["raise", "nan"])
def test_an_estimator_failing_mid_query_keeps_the_paid_answer(tmp_path, mode):
    with stack(tmp_path, quality_estimator=FailsAfterFirstAnswer(mode)) as s:
        r = s.client.chat.completions.create(model="cascade-routing", messages=MESSAGES)
    trace = ext(r)["trace"]
    ok = [c for c in trace["calls"] if c["status"] == "ok"]
    assert ok and r.model == ok[0]["model"]
    assert r.choices[0].message.content == s.fakes[r.model].text
    assert ext(r)["cost"] > 0


def test_fallback_model_when_the_loop_fails_before_any_call(tmp_path):
    class Broken:
        def predict(self, queries, answers):
            raise RuntimeError("estimator down")

    with stack(tmp_path, quality_estimator=Broken(), server={"fallback_model": "medium"}) as s:
        r = s.client.chat.completions.create(model="cascade-routing", messages=MESSAGES)
    assert r.model == "medium" and ext(r)["trace"]["fallback"] == "fallback_model"


def test_per_request_cap(tmp_path):
    with stack(tmp_path, budget={"per_request_cap": 1e-9}) as s:
        with pytest.raises(openai.APIStatusError) as info:
            s.client.chat.completions.create(model="cascade-routing", messages=MESSAGES)
        assert info.value.status_code == 402
        assert all(f.requests == [] for f in s.fakes.values())
    with stack(tmp_path, lam=0.0, budget={"per_request_cap": 3e-5}) as s:
        r = s.client.chat.completions.create(model="cascade-routing", messages=MESSAGES)
    trace = ext(r)["trace"]
    assert trace["cost"] <= 3e-5
    assert any(c["status"] == "refused" for c in trace["calls"])


def test_models_health_metrics_and_savings(tmp_path):
    with stack(tmp_path) as s:
        n = 3
        for _ in range(n):
            s.client.chat.completions.create(model="cascade-routing", messages=MESSAGES)
        assert [m.id for m in s.client.models.list().data] == ["cascade-routing"]
        health = httpx.get(s.url + "/healthz").json()
        metrics = httpx.get(s.url + "/metrics").text
        savings = httpx.get(s.url + "/v1/savings").json()
        with pytest.raises(openai.NotFoundError):
            s.client.chat.completions.create(model="gpt-4", messages=MESSAGES)
    assert health["status"] == "ok" and set(health["upstreams"]) == set(MODELS)
    lines = dict(
        line.rsplit(" ", 1) for line in metrics.splitlines() if line and not line.startswith("#")
    )
    decided = sum(
        float(v) for k, v in lines.items() if k.startswith("cascade_routing_decisions_total{")
    )
    assert decided == n
    for name in (
        "cascade_routing_upstream_calls_total",
        "cascade_routing_cost_dollars_total",
        "cascade_routing_decision_seconds_bucket",
        "cascade_routing_upstream_seconds",
        'cascade_routing_lambda{tenant="default"}',
        "cascade_routing_request_seconds",
    ):
        assert any(k.startswith(name) for k in lines), name
    assert savings["requests"] == n and savings["dearest_model"] == "large"
    assert savings["spent_dollars"] > 0


def test_feedback_is_logged_bounded_and_appended_to_jsonl(tmp_path):
    log_file = tmp_path / "feedback.jsonl"
    with stack(tmp_path, feedback={"jsonl": str(log_file), "max_entries": 2}) as s:
        ids = [
            s.client.chat.completions.create(model="cascade-routing", messages=MESSAGES).id
            for _ in range(3)
        ]
        for i, rid in enumerate(ids):
            resp = httpx.post(s.url + "/v1/feedback", json={"request_id": rid, "score": i})
            assert resp.status_code == 202
        unknown = httpx.post(s.url + "/v1/feedback", json={"request_id": "nope", "score": 1})
        bad = httpx.post(s.url + "/v1/feedback", json={"request_id": ids[0], "score": "x"})
        kept = list(s.gateway.feedback.entries)
    assert unknown.status_code == 404 and bad.status_code == 400
    assert [e["request_id"] for e in kept] == ids[1:]
    lines = [json.loads(x) for x in log_file.read_text().splitlines()]
    assert [x["request_id"] for x in lines] == ids and [x["score"] for x in lines] == [0, 1, 2]
    assert all(x["model"] in MODELS and x["cost"] > 0 for x in lines)


def test_bad_requests_get_clear_errors(tmp_path):
    with stack(tmp_path) as s:
        bad_json = httpx.post(s.url + "/v1/chat/completions", content=b"{nope")
        no_msgs = httpx.post(s.url + "/v1/chat/completions", json={"model": "cascade-routing"})
        empty = httpx.post(
            s.url + "/v1/chat/completions", json={"model": "cascade-routing", "messages": []}
        )
    assert bad_json.status_code == no_msgs.status_code == empty.status_code == 400
    assert "messages" in no_msgs.json()["error"]["message"]


def test_tenants_have_their_own_budget_and_unknown_keys_are_refused(tmp_path):
    budget = {
        "tenants": {"a": {"api_key_env": "TENANT_A_KEY", "budget": 1e-6}},
        "require_tenant_key": True,
        "gain_i": 1.0,
    }
    with stack(tmp_path, budget=budget, env={"TENANT_A_KEY": "tenant-a-secret"}) as s:
        with pytest.raises(openai.AuthenticationError):
            s.client.chat.completions.create(model="cascade-routing", messages=MESSAGES)
        a = openai.OpenAI(base_url=s.url + "/v1", api_key="tenant-a-secret", max_retries=0)
        r = a.chat.completions.create(model="cascade-routing", messages=MESSAGES)
        a.close()
        scale = s.gateway.budgets.controller("a").scale
    assert ext(r)["trace"]["tenant"] == "a"
    assert scale > 1.0  # the tenant overspent its tiny budget: λ went up


def test_no_query_text_or_key_in_logs_at_default_settings(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    with stack(tmp_path) as s:
        s.fakes["small"].script.append("malformed")
        s.client.chat.completions.create(model="cascade-routing", messages=MESSAGES)
        s.fakes["small"].default = "500"
        s.fakes["medium"].default = "500"
        s.fakes["large"].default = "500"
        with pytest.raises(openai.APIStatusError):
            s.client.chat.completions.create(model="cascade-routing", messages=MESSAGES)
    failures = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(failures) >= 3, "the failures above are logged"
    assert MARKER not in caplog.text and "sk-secret" not in caplog.text


def test_no_thread_or_task_left_after_shutdown(tmp_path):
    before = threading.active_count()
    with stack(tmp_path, server={"deadline": 1.0, "call_timeout": 5.0}) as s:
        s.client.chat.completions.create(model="cascade-routing", messages=MESSAGES)
        for f in s.fakes.values():
            f.default = "hang"
        with pytest.raises(openai.APIStatusError):
            s.client.chat.completions.create(model="cascade-routing", messages=MESSAGES)
        during = threading.active_count()
        gateway = s.gateway
    assert during >= before + 4  # three upstreams and the gateway ran in threads
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == before
    assert gateway.closed and not gateway.inflight


def test_an_opentelemetry_span_per_request_without_text(tmp_path, monkeypatch):
    """With opentelemetry-api present, each request gets a span with ids and figures only."""
    from cascade_routing.serve import telemetry

    spans: list[dict[str, Any]] = []

    class Span:
        def __init__(self, name: str) -> None:
            self.attrs: dict[str, Any] = {"name": name}

        def set_attribute(self, key: str, value: Any) -> None:
            self.attrs[key] = value

        def __enter__(self) -> Span:
            return self

        def __exit__(self, *exc: Any) -> None:
            spans.append(self.attrs)

    class Tracer:
        def start_as_current_span(self, name: str) -> Span:
            return Span(name)

    class Trace:
        @staticmethod
        def get_tracer(name: str) -> Tracer:
            return Tracer()

    monkeypatch.setattr(telemetry, "_otel_trace", Trace)
    with stack(tmp_path) as s:
        r = s.client.chat.completions.create(model="cascade-routing", messages=MESSAGES)
    assert len(spans) == 1
    span = spans[0]
    assert span["name"] == "cascade_routing.request"
    assert span["cascade_routing.request_id"] == r.id
    assert span["cascade_routing.model"] == r.model
    assert span["cascade_routing.cost"] == pytest.approx(ext(r)["cost"])
    assert MARKER not in repr(span)


class SlowQuality(ConfidencePriorQuality):
    """A heavy estimator: each estimate holds the thread for 0.8 s."""

    def __init__(self) -> None:
        super().__init__([0.55, 0.7, 0.85], [0.2] * 3, weight=0.8, post_sd=0.1)

    def predict(self, queries, answers):
        time.sleep(0.8)
        return super().predict(queries, answers)


@pytest.mark.parametrize("offload", [False, True])
def test_offloaded_planning_keeps_the_gateway_responsive(tmp_path, offload):
    with stack(
        tmp_path, quality_estimator=SlowQuality(), server={"offload_planning": offload}
    ) as s:
        done: list[Any] = []
        worker = threading.Thread(
            target=lambda: done.append(
                s.client.chat.completions.create(model="cascade-routing", messages=MESSAGES)
            )
        )
        worker.start()
        time.sleep(0.1)  # the request is now estimating
        slowest = 0.0
        while worker.is_alive():
            t0 = time.perf_counter()
            httpx.get(s.url + "/healthz", timeout=10)
            slowest = max(slowest, time.perf_counter() - t0)
        worker.join()
    assert done and done[0].choices[0].message.content
    # (wide margins: this machine is shared, a health check can wait 0.1-0.2 s under load)
    if offload:
        assert slowest < 0.4  # health checks answered while the estimator ran
    else:
        assert slowest >= 0.7  # the estimator held the event loop
