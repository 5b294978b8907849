"""ModelAnswer and its adapter from OpenAI-style chat completion responses."""

from __future__ import annotations

import math
from typing import Any

import pytest

from cascade_routing.learn import ModelAnswer

PRICE_IN = 0.15 / 1e6
PRICE_OUT = 0.60 / 1e6

# A chat completion as the OpenAI API returns it with logprobs=True (recorded shape).
WITH_LOGPROBS: dict[str, Any] = {
    "id": "chatcmpl-AbC123",
    "object": "chat.completion",
    "created": 1733000000,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "B", "refusal": None},
            "logprobs": {
                "content": [
                    {"token": "B", "logprob": -0.0231, "bytes": [66], "top_logprobs": []},
                ],
                "refusal": None,
            },
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 212, "completion_tokens": 1, "total_tokens": 213},
    "system_fingerprint": "fp_0ba0d124f1",
}

# The same call without logprobs, a longer answer.
WITHOUT_LOGPROBS: dict[str, Any] = {
    "id": "chatcmpl-XyZ789",
    "object": "chat.completion",
    "created": 1733000001,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "  The answer is 42.  "},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 30, "completion_tokens": 7, "total_tokens": 37},
}

MULTI_TOKEN: dict[str, Any] = {
    "choices": [
        {
            "message": {"role": "assistant", "content": "Paris"},
            "logprobs": {
                "content": [
                    {"token": "Par", "logprob": -0.5},
                    {"token": "is", "logprob": -0.25},
                ]
            },
        }
    ],
    "usage": {"prompt_tokens": 10, "completion_tokens": 2},
}


class _Dumpable:
    """Stands in for the openai client's pydantic response object."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def model_dump(self) -> dict[str, Any]:
        return self._data


def test_from_openai_with_logprobs() -> None:
    a = ModelAnswer.from_openai(WITH_LOGPROBS, price_in=PRICE_IN, price_out=PRICE_OUT)
    assert a.text == "B" and a.parsed == "B"
    assert a.logprobs == (-0.0231,) and a.tokens == ("B",)
    assert a.confidence == pytest.approx(-0.0231)
    assert a.cost == pytest.approx(212 * PRICE_IN + 1 * PRICE_OUT)
    assert a.n_output_tokens == 1


def test_from_openai_sums_token_logprobs() -> None:
    a = ModelAnswer.from_openai(MULTI_TOKEN, price_in=1.0, price_out=2.0)
    assert a.tokens == ("Par", "is")
    assert a.confidence == pytest.approx(-0.75)
    assert a.cost == pytest.approx(10 * 1.0 + 2 * 2.0)


def test_from_openai_without_logprobs_and_custom_parse() -> None:
    a = ModelAnswer.from_openai(
        WITHOUT_LOGPROBS,
        price_in=PRICE_IN,
        price_out=PRICE_OUT,
        parse=lambda t: t.strip().rstrip(".").split()[-1],
    )
    assert a.text == "  The answer is 42.  "
    assert a.parsed == "42"
    assert a.confidence is None and a.logprobs is None and a.tokens is None
    assert a.cost == pytest.approx(30 * PRICE_IN + 7 * PRICE_OUT)
    default = ModelAnswer.from_openai(WITHOUT_LOGPROBS, price_in=0.0, price_out=0.0)
    assert default.parsed == "The answer is 42."


def test_from_openai_accepts_model_dump_objects() -> None:
    a = ModelAnswer.from_openai(_Dumpable(WITH_LOGPROBS), price_in=PRICE_IN, price_out=PRICE_OUT)
    assert a == ModelAnswer.from_openai(WITH_LOGPROBS, price_in=PRICE_IN, price_out=PRICE_OUT)


def test_from_openai_without_usage_has_no_cost() -> None:
    data = {k: v for k, v in WITH_LOGPROBS.items() if k != "usage"}
    assert ModelAnswer.from_openai(data, price_in=1.0, price_out=1.0).cost is None


@pytest.mark.parametrize(
    ("response", "error", "match"),
    [
        ("not a response", TypeError, "response must be a dict"),
        ({"choices": []}, ValueError, "no choices"),
        ({}, ValueError, "no choices"),
        ({"choices": [{"message": {"content": None}}]}, ValueError, "content"),
        ({"choices": [{"message": {"content": 3}}]}, TypeError, "content"),
        ({"choices": [{}]}, ValueError, "no 'message'"),
        (
            {
                "choices": [
                    {
                        "message": {"content": "A"},
                        "logprobs": {"content": [{"token": "A", "logprob": "low"}]},
                    }
                ]
            },
            TypeError,
            "logprob",
        ),
        (
            {
                "choices": [
                    {
                        "message": {"content": "A"},
                        "logprobs": {"content": [{"token": "A", "logprob": 0.5}]},
                    }
                ]
            },
            ValueError,
            "logprob",
        ),
        (
            {
                "choices": [{"message": {"content": "A"}}],
                "usage": {"prompt_tokens": 1.5, "completion_tokens": 1},
            },
            TypeError,
            "prompt_tokens",
        ),
    ],
)
def test_from_openai_rejects_malformed_responses(response: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        ModelAnswer.from_openai(response, price_in=1.0, price_out=1.0)


def test_from_openai_rejects_bad_prices() -> None:
    with pytest.raises(ValueError, match="price_in"):
        ModelAnswer.from_openai(WITH_LOGPROBS, price_in=-1.0, price_out=1.0)
    with pytest.raises(TypeError, match="price_in"):
        ModelAnswer.from_openai(WITH_LOGPROBS, price_in="cheap", price_out=1.0)  # type: ignore[arg-type]


def test_model_answer_validation() -> None:
    assert ModelAnswer("x", confidence=-math.inf).confidence == -math.inf
    with pytest.raises(ValueError, match="confidence"):
        ModelAnswer("x", confidence=math.nan)
    with pytest.raises(TypeError, match="confidence"):
        ModelAnswer("x", confidence="high")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cost"):
        ModelAnswer("x", cost=-1.0)
    with pytest.raises(TypeError, match="text"):
        ModelAnswer(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="parsed"):
        ModelAnswer("x", parsed=["A"])
    with pytest.raises(ValueError, match="same length"):
        ModelAnswer("x", logprobs=(-0.1, -0.2), tokens=("a",))
