"""A cost estimator from a price table (docs/estimators.md).

Ex ante, model ``j``'s cost on a query is ``input tokens × price_in_j + predicted output
tokens × price_out_j``, where the output length is predicted from the input length by a
per-model least-squares line fitted on logged answers. Post hoc it is the observed cost of the
:class:`~cascade_routing.answers.ModelAnswer`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..answers import ModelAnswer
from ..validation import check_model_names, check_number, float_array, model_index

logger = logging.getLogger(__name__)

__all__ = ["PriceTableCost"]


class PriceTableCost:
    """Ex-ante cost from a price table and predicted output length; post hoc the observed cost.

    Parameters
    ----------
    models : sequence of str
        Model names, in the column order of ``answers``.
    prices : mapping of str to (float, float)
        ``{model: (price per input token, price per output token)}`` for every model.
    chars_per_token : float
        Input tokens of a query without ``"input_tokens"``: ``len(text) / chars_per_token``.

    Queries are texts or dicts with ``"text"`` and optionally ``"input_tokens"`` (a number, or a
    dict model name -> number when tokenisers differ).
    """

    def __init__(
        self,
        models: Sequence[str],
        prices: Mapping[str, tuple[float, float]],
        *,
        chars_per_token: float = 4.0,
    ) -> None:
        self.models = check_model_names(models)
        if not isinstance(prices, Mapping):
            raise TypeError("prices must be a dict {model: (price_in, price_out)} per token")
        index = {m: j for j, m in enumerate(self.models)}
        table = np.zeros((len(self.models), 2))
        seen = set()
        for name, pair in prices.items():
            j = model_index(index, name, what="model in prices")
            if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
                raise TypeError(f"prices[{name!r}] must be a pair (price_in, price_out)")
            table[j] = [check_number(p, f"prices[{name!r}]", 0.0) for p in pair]
            seen.add(name)
        missing = [m for m in self.models if m not in seen]
        if missing:
            raise ValueError(f"prices lacks models {missing}")
        self.prices = {
            m: (float(table[j, 0]), float(table[j, 1])) for j, m in enumerate(self.models)
        }
        self.price_table_ = table
        self.chars_per_token = check_number(chars_per_token, "chars_per_token", 1e-6)

    # ------------------------------------------------------------------ inputs

    def _input_tokens(self, queries: Sequence[Any]) -> NDArray[np.float64]:
        if isinstance(queries, (str, bytes, Mapping)) or not isinstance(queries, Sequence):
            raise TypeError("queries must be a sequence of texts or dicts")
        k = len(self.models)
        out = np.empty((len(queries), k))
        for i, q in enumerate(queries):
            if isinstance(q, str):
                out[i] = len(q) / self.chars_per_token
                continue
            if not isinstance(q, Mapping):
                raise TypeError(
                    f"queries[{i}] must be a str or a dict with 'text', got {type(q).__name__}"
                )
            tokens = q.get("input_tokens")
            if tokens is None:
                text = q.get("text", "")
                if not isinstance(text, str):
                    raise TypeError(f"queries[{i}]['text'] must be a str")
                out[i] = len(text) / self.chars_per_token
            elif isinstance(tokens, Mapping):
                for j, m in enumerate(self.models):
                    if m not in tokens:
                        raise ValueError(f"queries[{i}]['input_tokens'] lacks model {m!r}")
                    out[i, j] = check_number(
                        tokens[m], f"queries[{i}]['input_tokens'][{m!r}]", 0.0
                    )
            else:
                out[i] = check_number(tokens, f"queries[{i}]['input_tokens']", 0.0)
        return out

    def _rows(self, answers: Any, n: int) -> list[list[Any]]:
        if isinstance(answers, (str, bytes, Mapping)) or not isinstance(answers, Sequence):
            raise TypeError("answers must be a sequence with one row per query")
        if len(answers) != n:
            raise ValueError(f"answers has {len(answers)} rows; expected one per query ({n})")
        k = len(self.models)
        index = {m: j for j, m in enumerate(self.models)}
        rows = []
        for i, row in enumerate(answers):
            if isinstance(row, Mapping):
                entries: list[Any] = [None] * k
                for name, a in row.items():
                    entries[model_index(index, name, what=f"model in answers[{i}]")] = a
            elif isinstance(row, (str, bytes)) or not isinstance(row, Sequence):
                raise TypeError(f"answers[{i}] must be a sequence with one entry per model")
            elif len(row) != k:
                raise ValueError(f"answers[{i}] has {len(row)} entries; expected {k}")
            else:
                entries = list(row)
            for j, a in enumerate(entries):
                if a is not None and not isinstance(a, ModelAnswer):
                    raise TypeError(
                        f"answers[{i}][{j}] must be a ModelAnswer or None, got {type(a).__name__}"
                    )
            rows.append(entries)
        return rows

    # ------------------------------------------------------------------ fit / predict

    def fit(self, queries: Sequence[Any], answers: Sequence[Sequence[Any]]) -> PriceTableCost:
        """Fit the per-model line ``output tokens ≈ a + b · input tokens`` on logged answers.

        An answer's output length is its number of tokens when known, else the output tokens
        its observed cost pays for, ``(cost − input tokens × price_in) / price_out`` (this
        also absorbs extra calls billed with the answer, e.g. a confidence query).
        """
        x = self._input_tokens(queries)
        rows = self._rows(answers, len(queries))
        k = len(self.models)
        self.intercept_ = np.zeros(k)
        self.slope_ = np.zeros(k)
        for j, m in enumerate(self.models):
            p_in, p_out = self.price_table_[j]
            xs, ys = [], []
            for i, row in enumerate(rows):
                a = row[j]
                if a is None:
                    continue
                n_out = a.n_output_tokens
                if n_out is None and a.cost is not None and p_out > 0:
                    n_out = max(a.cost - x[i, j] * p_in, 0.0) / p_out
                if n_out is not None:
                    xs.append(x[i, j])
                    ys.append(float(n_out))
            if not ys:
                raise ValueError(
                    f"no answer of model {m!r} has tokens or a cost: cannot fit its output length"
                )
            xa, ya = np.asarray(xs), np.asarray(ys)
            if xa.size >= 2 and xa.std() > 0:
                slope, icpt = np.polyfit(xa, ya, 1)
            else:
                slope, icpt = 0.0, float(ya.mean())
            self.slope_[j], self.intercept_[j] = float(slope), float(icpt)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "slope_"):
            raise RuntimeError("PriceTableCost is not fitted; call fit(queries, answers) first")

    def predict_ex_ante(self, queries: Sequence[Any]) -> NDArray[np.float64]:
        """Ex-ante costs ``(n, k)`` of every model."""
        self._check_fitted()
        x = self._input_tokens(queries)
        out_tokens = np.maximum(self.intercept_ + self.slope_ * x, 0.0)
        return x * self.price_table_[:, 0] + out_tokens * self.price_table_[:, 1]

    def predict(
        self, queries: Sequence[Any], answers: Sequence[Sequence[Any]]
    ) -> NDArray[np.float64]:
        """Costs ``(n, k)``: observed for the models that have run, ex ante for the others.

        A run model's answer without ``cost`` is priced from its output tokens (when known) or
        else taken ex ante.
        """
        cost = self.predict_ex_ante(queries)
        x = self._input_tokens(queries)
        for i, row in enumerate(self._rows(answers, len(queries))):
            for j, a in enumerate(row):
                if a is None:
                    continue
                if a.cost is not None:
                    cost[i, j] = a.cost
                elif a.n_output_tokens is not None:
                    p_in, p_out = self.price_table_[j]
                    cost[i, j] = x[i, j] * p_in + a.n_output_tokens * p_out
        return cost

    # ------------------------------------------------------------------ state (persist.py)

    def _state(self) -> tuple[dict[str, Any], dict[str, NDArray[np.float64]]]:
        self._check_fitted()
        params = {
            "models": list(self.models),
            "prices": {m: list(p) for m, p in self.prices.items()},
            "chars_per_token": self.chars_per_token,
        }
        return params, {"intercept_": self.intercept_, "slope_": self.slope_}

    @classmethod
    def _from_state(
        cls, params: Mapping[str, Any], arrays: Mapping[str, ArrayLike]
    ) -> PriceTableCost:
        prices = params["prices"]
        if not isinstance(prices, Mapping):
            raise ValueError("saved PriceTableCost: 'prices' must be an object")
        obj = cls(
            params["models"],
            {m: (float(p[0]), float(p[1])) for m, p in prices.items()},
            chars_per_token=params["chars_per_token"],
        )
        k = len(obj.models)
        obj.intercept_ = float_array(arrays["intercept_"], "intercept_", 1, shape=(k,))
        obj.slope_ = float_array(arrays["slope_"], "slope_", 1, shape=(k,))
        return obj
