"""The OpenAI-compatible clients against fake upstreams on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import math
import time

import pytest
from _serve_fakes import PRICES, FakeUpstream, fake_env, upstream_config

from cascade_routing.serve.clients import (
    ChatQuery,
    CircuitBreaker,
    CircuitOpenError,
    OpenAIUpstreams,
    UpstreamError,
)
from cascade_routing.serve.config import parse_config

PROMPT = "What is six times seven? zebra-marker-9931"


@pytest.fixture
def small():
    with FakeUpstream("small", text="the answer is 42", logprob=-0.1) as fake:
        yield fake


def clients(fake: FakeUpstream, **sections):
    cfg = upstream_config({"small": fake}, **sections)
    return OpenAIUpstreams(parse_config(cfg, environ=fake_env(["small"])))


def expected_cost(fake: FakeUpstream) -> float:
    """usage × price, from what the fake reported (not from the client)."""
    body = fake.requests[-1]
    usage = fake.completion(body)["usage"]
    p_in, p_out = PRICES["small"]
    return usage["prompt_tokens"] * p_in + usage["completion_tokens"] * p_out


def test_answer_has_measured_cost_logprobs_and_the_key_only_in_the_header(small):
    with clients(small) as up:
        ans = up.call_model("small", PROMPT)
    assert ans.text == "the answer is 42"
    assert ans.cost == pytest.approx(expected_cost(small), rel=1e-12)
    assert small.requests[0]["logprobs"] is True
    assert small.requests[0]["model"] == "up-small"
    assert ans.logprobs == (-0.1,) * 4
    assert ans.token_probability == pytest.approx(math.exp(-0.1))
    assert small.auth == ["Bearer sk-secret-small-0123456789"]
    for text in (repr(ans), repr(up), repr(up.config)):
        assert "sk-secret" not in text and "zebra-marker" not in text


def test_logprobs_not_requested_when_the_upstream_does_not_support_them(small):
    cfg = upstream_config({"small": small})
    cfg["models"]["small"]["logprobs"] = False
    with OpenAIUpstreams(parse_config(cfg, environ=fake_env(["small"]))) as up:
        ans = up.call_model("small", PROMPT)
    assert "logprobs" not in small.requests[0]
    assert ans.logprobs is None and ans.cost is not None


def test_429_retry_after_is_honoured(small):
    small.script.extend([("429", 0.3), "ok"])
    with clients(small) as up:
        t0 = time.perf_counter()
        ans = up.call_model("small", PROMPT)
        elapsed = time.perf_counter() - t0
    assert ans.attempts == 2 and len(small.requests) == 2
    assert elapsed >= 0.3


def test_429_with_a_long_retry_after_fails_at_once(small):
    small.script.append(("429", 60))
    with clients(small) as up:
        t0 = time.perf_counter()
        with pytest.raises(UpstreamError) as info:
            up.call_model("small", PROMPT)
    assert info.value.kind == "rate_limited" and info.value.status == 429
    assert time.perf_counter() - t0 < 2 and len(small.requests) == 1


def test_500_is_retried_then_reported(small):
    small.script.extend(["500", "ok"])
    with clients(small) as up:
        assert up.call_model("small", PROMPT).attempts == 2
        small.script.extend(["500", "500"])
        with pytest.raises(UpstreamError) as info:
            up.call_model("small", PROMPT)
    assert info.value.kind == "http_status" and info.value.status == 500
    assert info.value.attempts == 2 and info.value.billed == "none"


def test_a_hang_times_out_with_the_cost_marked_unknown(small):
    small.default = "hang"
    with clients(small, retry={"max_attempts": 1}) as up:
        t0 = time.perf_counter()
        with pytest.raises(UpstreamError) as info:
            up.call_model("small", PROMPT)
    assert info.value.kind == "timeout" and info.value.billed == "unknown"
    assert 2.0 <= time.perf_counter() - t0 < 3.5  # the configured 2 s timeout


@pytest.mark.parametrize("mode", ["malformed", "badshape"])
def test_malformed_replies_fail_without_retry(small, mode):
    small.default = mode
    with clients(small) as up:
        with pytest.raises(UpstreamError) as info:
            up.call_model("small", PROMPT)
    assert info.value.kind == "malformed" and info.value.billed == "unknown"
    assert len(small.requests) == 1


def test_a_reply_without_usage_has_an_unknown_cost(small):
    small.default = "nousage"
    with clients(small) as up:
        assert up.call_model("small", PROMPT).cost is None


def test_the_loop_keeps_a_paid_answer_whose_cost_is_unknown(small):
    """Through Strategy.run: a reply without usage is an answer with an unknown cost (the
    estimate is counted and flagged), not a failure that drops what was paid for."""
    import numpy as np

    import cascade_routing as cr

    class Prior:
        def predict(self, queries, answers):
            return np.full((len(queries), 1), 0.9)

    strat = cr.Router(Prior(), cr.ConstantCost([0.004]), ["small"]).set_lambdas(0.0)
    small.default = "nousage"
    with clients(small) as up:
        result = strat.run(PROMPT, up.loop_client())
        aresult = asyncio.run(strat.arun(PROMPT, up.aloop_client()))
    for r in (result, aresult):
        assert r.model == "small" and r.answer.text == "the answer is 42"
        assert [s.status for s in r.trace if s.model] == ["unknown_cost"]
        assert r.cost == pytest.approx(0.004) and not r.cost_complete
    small.default = "ok"
    with clients(small) as up:
        measured = strat.run(PROMPT, up.loop_client())
    assert measured.cost == pytest.approx(expected_cost(small), rel=1e-12)
    assert measured.cost_complete


def test_circuit_breaker_opens_then_half_opens(small):
    small.default = "500"
    with clients(small, retry={"max_attempts": 1}) as up:
        for _ in range(3):
            with pytest.raises(UpstreamError):
                up.call_model("small", PROMPT)
        assert up.breaker("small").state == "open"
        with pytest.raises(CircuitOpenError):
            up.call_model("small", PROMPT)
        assert len(small.requests) == 3  # the open breaker sent nothing
        time.sleep(0.55)  # cooldown 0.5 s
        assert up.breaker("small").state == "half_open"
        small.default = "ok"
        assert up.call_model("small", PROMPT).text
        assert up.breaker("small").state == "closed"


def test_breaker_half_open_failure_reopens():
    now = [0.0]
    br = CircuitBreaker(2, 10.0, clock=lambda: now[0])
    br.failure()
    assert br.allow()
    br.failure()
    assert not br.allow()
    now[0] = 10.0
    assert br.allow() and not br.allow()  # one trial at a time
    br.failure()
    assert br.state == "open" and not br.allow()


def test_backoff_jitter_is_seeded(small):
    a, b = clients(small), clients(small)
    seq_a = [a._backoff(i) for i in range(1, 6)]
    seq_b = [b._backoff(i) for i in range(1, 6)]
    assert seq_a == seq_b
    assert all(0.005 <= d <= 0.075 for d in seq_a)  # base 0.01 × 2^(i-1), capped, × [0.5, 1.5)
    c = clients(small, retry={"seed": 1})
    assert [c._backoff(i) for i in range(1, 6)] != seq_a


def test_no_key_or_prompt_in_logs_or_errors(small, caplog):
    caplog.set_level(logging.DEBUG)
    small.script.extend(["500", "500", "malformed"])
    with clients(small) as up:
        errors = []
        for _ in range(2):
            try:
                up.call_model("small", PROMPT)
            except UpstreamError as exc:
                errors.append(f"{exc!r} {exc}")
    assert len(errors) == 2
    text = caplog.text + " ".join(errors)
    assert "sk-secret" not in text and "zebra-marker" not in text


def test_async_client_and_cancellation(small):
    async def main():
        async with clients(small) as up:
            ans = await up.acall_model("small", ChatQuery(PROMPT, params={"max_tokens": 5}))
            assert small.requests[-1]["max_tokens"] == 5
            small.default = "hang"
            task = asyncio.create_task(up.acall_model("small", PROMPT))
            await asyncio.sleep(0.2)
            t0 = time.perf_counter()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return ans, time.perf_counter() - t0

    ans, cancel_seconds = asyncio.run(main())
    assert ans.cost == pytest.approx(expected_cost(small), rel=1e-12)  # same prompt
    assert cancel_seconds < 0.5


def test_unknown_model_and_bad_parameters(small):
    with clients(small) as up:
        with pytest.raises(ValueError, match="unknown model 'nope'"):
            up.call_model("nope", PROMPT)
        with pytest.raises(TypeError, match="unsupported chat parameter"):
            up.call_model("small", PROMPT, tools=[])
        with pytest.raises(TypeError, match="messages"):
            up.call_model("small", 3)
