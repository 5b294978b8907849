"""Names and settings of the paper's experiment, importable without the ``[eval]`` extra.

The command line builds its help text and checks its flags from these before it imports the
experiment itself (which needs pandas, scikit-learn and matplotlib).
"""

from __future__ import annotations

__all__ = [
    "BUNDLED",
    "NOISE_LEVELS",
    "PAPER_POOLS",
    "ROUTERBENCH_MODELS",
    "STRATEGY_ALIASES",
    "STRATEGY_LABELS",
]

#: Strategy keys, in the order tables and plots show them, with display labels.
STRATEGY_LABELS: dict[str, str] = {
    "routing": "routing",
    "threshold_cascade": "threshold cascade",
    "optimal_cascade": "optimal cascade",
    "cascade_routing": "cascade routing",
}

#: Other spellings of the strategy keys accepted on the command line.
STRATEGY_ALIASES: dict[str, str] = {
    "router": "routing",
    "threshold": "threshold_cascade",
    "cascade": "optimal_cascade",
    "cascade_router": "cascade_routing",
}

#: Noise levels of the paper: (quality σ_ante, quality σ_post, cost σ_ante, cost σ_post).
NOISE_LEVELS: dict[str, tuple[float, float, float, float]] = {
    "low": (0.6, 0.3, 0.0002, 0.00005),
    "medium": (1.6, 0.8, 0.0004, 0.0001),
    "high": (2.4, 1.2, 100.0, 100.0),
}

#: All 11 RouterBench models, under this data's column names.
ROUTERBENCH_MODELS: tuple[str, ...] = (
    "WizardLM/WizardLM-13B-V1.2",
    "claude-instant-v1",
    "claude-v1",
    "claude-v2",
    "gpt-3.5-turbo-1106",
    "gpt-4-1106-preview",
    "meta/code-llama-instruct-34b-chat",
    "meta/llama-2-70b-chat",
    "mistralai/mistral-7b-chat",
    "mistralai/mixtral-8x7b-chat",
    "zero-one-ai/Yi-34B-Chat",
)

#: The paper's model pools (this data's column names; the protocol sorts them by train cost).
PAPER_POOLS: dict[int, tuple[str, ...]] = {
    3: ("mistralai/mixtral-8x7b-chat", "gpt-3.5-turbo-1106", "gpt-4-1106-preview"),
    5: (
        "mistralai/mixtral-8x7b-chat",
        "gpt-3.5-turbo-1106",
        "gpt-4-1106-preview",
        "WizardLM/WizardLM-13B-V1.2",
        "claude-v2",
    ),
    11: ROUTERBENCH_MODELS,
}

#: Bundled dataset name -> folder under ``cascade_routing/data``.
BUNDLED: dict[str, str] = {
    "llm_cascades_mmlu": "llm_cascades_mmlu",
    "routerbench": "routerbench",
}
