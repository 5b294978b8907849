"""A structured model answer, and an adapter from OpenAI-style chat completion responses.

:class:`ModelAnswer` is what a service records when a model has answered a query: the text,
the parsed answer (the part that is compared between models, e.g. a multiple-choice letter or
a number), a confidence score, the token log-probabilities and tokens when the client returns
them, and the dollar cost. The learned estimators of :mod:`cascade_routing.learn` read these
fields (docs/estimators.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .validation import is_real

__all__ = ["ModelAnswer"]


def _optional_float(value: Any, name: str, *, allow_neg_inf: bool = False) -> float | None:
    if value is None:
        return None
    if not is_real(value):
        raise TypeError(f"{name} must be a real number or None, got {type(value).__name__}")
    out = float(value)
    if math.isnan(out) or out == math.inf or (out == -math.inf and not allow_neg_inf):
        what = "finite or -inf" if allow_neg_inf else "finite"
        raise ValueError(f"{name} must be {what}, got {out}")
    return out


@dataclass(frozen=True)
class ModelAnswer:
    """One model's answer to one query.

    Attributes
    ----------
    text : str
        The raw answer text.
    parsed : object, optional
        The answer compared between models (hashable: a letter, a number, a normalised
        string). ``None`` means "no parsed answer" (it agrees with nothing).
    confidence : float, optional
        Any score where higher means more confident, e.g. the log-probability of the answer.
        ``-inf`` is allowed (an impossible answer); NaN and ``+inf`` are not.
    logprobs : tuple of float, optional
        Log-probability of each output token.
    tokens : tuple of str, optional
        The output tokens, aligned with ``logprobs`` when both are given.
    cost : float, optional
        What the call cost (non-negative), e.g. US dollars.
    """

    text: str
    parsed: Any = None
    confidence: float | None = None
    logprobs: tuple[float, ...] | None = None
    tokens: tuple[str, ...] | None = None
    cost: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise TypeError(f"ModelAnswer.text must be a str, got {type(self.text).__name__}")
        if self.parsed is not None:
            try:
                hash(self.parsed)
            except TypeError:
                raise TypeError(
                    "ModelAnswer.parsed must be hashable (a str, number or tuple), got "
                    f"{type(self.parsed).__name__}"
                ) from None
        conf = _optional_float(self.confidence, "ModelAnswer.confidence", allow_neg_inf=True)
        object.__setattr__(self, "confidence", conf)
        cost = _optional_float(self.cost, "ModelAnswer.cost")
        if cost is not None and cost < 0:
            raise ValueError(f"ModelAnswer.cost must be non-negative, got {cost}")
        object.__setattr__(self, "cost", cost)
        if self.logprobs is not None:
            lps = tuple(
                _optional_float(v, f"ModelAnswer.logprobs[{i}]", allow_neg_inf=True)
                for i, v in enumerate(self.logprobs)
            )
            if any(v is None for v in lps):
                raise TypeError("ModelAnswer.logprobs must hold numbers, not None")
            if any(v is not None and v > 0 for v in lps):
                raise ValueError("ModelAnswer.logprobs are log-probabilities: they must be <= 0")
            object.__setattr__(self, "logprobs", lps)
        if self.tokens is not None:
            toks = tuple(self.tokens)
            if not all(isinstance(t, str) for t in toks):
                raise TypeError("ModelAnswer.tokens must be a sequence of str")
            if self.logprobs is not None and len(toks) != len(self.logprobs):
                raise ValueError(
                    f"ModelAnswer.tokens ({len(toks)}) and logprobs ({len(self.logprobs)}) "
                    "must have the same length"
                )
            object.__setattr__(self, "tokens", toks)

    @property
    def n_output_tokens(self) -> int | None:
        """Number of output tokens, when the tokens or their log-probabilities are known."""
        if self.tokens is not None:
            return len(self.tokens)
        if self.logprobs is not None:
            return len(self.logprobs)
        return None

    @classmethod
    def from_openai(
        cls,
        response: Any,
        *,
        price_in: float,
        price_out: float,
        parse: Callable[[str], Any] | None = None,
    ) -> ModelAnswer:
        """Build an answer from an OpenAI-style chat completion response.

        Parameters
        ----------
        response : dict or object with ``model_dump()``
            The response of ``chat.completions.create`` (the ``openai`` client's object or
            its JSON as a dict). Read: ``choices[0].message.content``,
            ``choices[0].logprobs.content[*].logprob`` / ``.token`` when the request asked for
            ``logprobs=True``, and ``usage.prompt_tokens`` / ``usage.completion_tokens``.
        price_in, price_out : float
            Price per input / output token (e.g. US dollars per token; a price per million
            tokens divided by 1e6).
        parse : callable, optional
            ``parse(text) -> parsed answer`` (e.g. extract the letter of a multiple-choice
            answer). Default: the stripped text.

        The confidence is the sum of the output tokens' log-probabilities (the log-probability
        of the whole answer) when they are present, else ``None``. The cost is
        ``prompt_tokens * price_in + completion_tokens * price_out`` when ``usage`` is present,
        else ``None``.

        Raises
        ------
        TypeError
            ``response`` is neither a mapping nor has ``model_dump()``, or a field has the wrong
            type.
        ValueError
            ``response`` has no ``choices[0].message.content``, or a price is negative.
        """
        p_in = _optional_float(price_in, "price_in")
        p_out = _optional_float(price_out, "price_out")
        if p_in is None or p_out is None:
            raise TypeError("price_in and price_out must be numbers (price per token)")
        if p_in < 0 or p_out < 0:
            raise ValueError(f"price_in and price_out must be >= 0, got {p_in}, {p_out}")
        if parse is not None and not callable(parse):
            raise TypeError("parse must be a callable parse(text) -> parsed answer, or None")
        data = _as_mapping(response, "response")
        choices = data.get("choices")
        if not isinstance(choices, Sequence) or isinstance(choices, (str, bytes)) or not choices:
            raise ValueError(
                "response has no choices: expected a chat completion with response['choices'][0]"
            )
        choice = _as_mapping(choices[0], "response['choices'][0]")
        message = choice.get("message")
        if message is None:
            raise ValueError("response['choices'][0] has no 'message'")
        message = _as_mapping(message, "response['choices'][0]['message']")
        text = message.get("content")
        if text is None:
            raise ValueError(
                "response['choices'][0]['message']['content'] is missing or null (a refusal or "
                "a tool call has no text answer)"
            )
        if not isinstance(text, str):
            raise TypeError(
                "response['choices'][0]['message']['content'] must be a str, got "
                f"{type(text).__name__}"
            )
        logprobs, tokens = _token_logprobs(choice.get("logprobs"))
        confidence = math.fsum(logprobs) if logprobs else None
        cost = None
        usage = data.get("usage")
        if usage is not None:
            usage = _as_mapping(usage, "response['usage']")
            n_in = _token_count(usage.get("prompt_tokens"), "response['usage']['prompt_tokens']")
            n_out = _token_count(
                usage.get("completion_tokens"), "response['usage']['completion_tokens']"
            )
            cost = n_in * p_in + n_out * p_out
        parsed = parse(text) if parse is not None else text.strip()
        return cls(
            text=text,
            parsed=parsed,
            confidence=confidence,
            logprobs=logprobs,
            tokens=tokens,
            cost=cost,
        )


def _as_mapping(value: Any, name: str) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        out = dump()
        if isinstance(out, Mapping):
            return out
    raise TypeError(
        f"{name} must be a dict (the response's JSON) or an object with model_dump(), "
        f"got {type(value).__name__}"
    )


def _token_count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def _token_logprobs(value: Any) -> tuple[tuple[float, ...] | None, tuple[str, ...] | None]:
    """``(logprobs, tokens)`` from ``choices[0].logprobs`` (``None`` when absent)."""
    if value is None:
        return None, None
    where = "response['choices'][0]['logprobs']"
    data = _as_mapping(value, where)
    content = data.get("content")
    if content is None:
        return None, None
    if not isinstance(content, Sequence) or isinstance(content, (str, bytes)):
        raise TypeError(f"{where}['content'] must be a list of token entries")
    logprobs: list[float] = []
    tokens: list[str] = []
    for t, entry in enumerate(content):
        item = _as_mapping(entry, f"{where}['content'][{t}]")
        lp = item.get("logprob")
        tok = item.get("token")
        if not is_real(lp):
            raise TypeError(
                f"{where}['content'][{t}]['logprob'] must be a number, got {type(lp).__name__}"
            )
        if not isinstance(tok, str):
            raise TypeError(
                f"{where}['content'][{t}]['token'] must be a str, got {type(tok).__name__}"
            )
        lp_f = float(lp)  # type: ignore[arg-type]  # is_real(lp) holds
        if math.isnan(lp_f) or lp_f > 0:
            raise ValueError(
                f"{where}['content'][{t}]['logprob'] must be a log-probability (<= 0), got {lp_f}"
            )
        logprobs.append(lp_f)
        tokens.append(tok)
    return tuple(logprobs), tuple(tokens)
