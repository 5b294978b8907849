"""Configuration errors surface at start-up, with a message naming the field."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _serve_fakes import MODELS, write_policy

from cascade_routing.serve import ConfigError, build_gateway, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]


def config(**over):
    models = {
        m: {
            "base_url": f"http://127.0.0.1:9/{m}/v1",
            "price_in": 1e-6,
            "price_out": 2e-6,
            "api_key_env": f"KEY_{m.upper()}",
        }
        for m in MODELS
    }
    cfg = {"models": models}
    cfg.update(over)
    return cfg


ENV = {f"KEY_{m.upper()}": "sk-test-" + m for m in MODELS}


def test_a_valid_config_keeps_model_order_and_hides_keys():
    cfg = parse_config(config(), environ=ENV)
    assert cfg.model_names == MODELS
    assert cfg.models[0].api_key.reveal() == "sk-test-small"
    assert "sk-test" not in repr(cfg) and "sk-test" not in str(cfg.models[0].api_key)


def test_missing_api_key_variable_is_named():
    env = dict(ENV)
    del env["KEY_MEDIUM"]
    with pytest.raises(ConfigError, match="KEY_MEDIUM is not set"):
        parse_config(config(), environ=env)


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"price_in": -1}, "price_in must be finite and >= 0"),
        ({"price_out": "cheap"}, "price_out must be a number"),
        ({"base_url": "ftp://x"}, "base_url must start with http"),
        ({"timeout": 0}, "timeout must be finite and > 0"),
        ({"colour": "red"}, "unknown keys \\['colour'\\]"),
    ],
)
def test_bad_model_fields_are_named(patch, message):
    cfg = config()
    cfg["models"]["small"].update(patch)
    with pytest.raises(ConfigError, match=message):
        parse_config(cfg, environ=ENV)


def test_bad_sections_are_named():
    with pytest.raises(ConfigError, match="models"):
        parse_config({"models": {}}, environ=ENV)
    with pytest.raises(ConfigError, match="retry.max_attempts"):
        parse_config(config(retry={"max_attempts": 0}), environ=ENV)
    with pytest.raises(ConfigError, match="estimator.kind"):
        parse_config(config(estimator={"kind": "oracle"}), environ=ENV)
    with pytest.raises(ConfigError, match="unknown model 'huge'"):
        parse_config(config(server={"fallback_model": "huge"}), environ=ENV)
    with pytest.raises(ConfigError, match="TEAM_KEY is not set"):
        parse_config(
            config(budget={"tenants": {"t": {"api_key_env": "TEAM_KEY", "budget": 0.1}}}),
            environ=ENV,
        )


def test_yaml_and_json_files(tmp_path):
    import yaml

    y = tmp_path / "c.yaml"
    y.write_text(yaml.safe_dump(config(), sort_keys=False))
    j = tmp_path / "c.json"
    j.write_text(json.dumps(config()))
    a, b = load_config(y, environ=ENV), load_config(j, environ=ENV)
    assert a.source == str(y) and b.source == str(j)
    assert dataclasses.replace(a, source="") == dataclasses.replace(b, source="")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, environ=ENV)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.json", environ=ENV)


def test_policy_and_config_models_must_agree(tmp_path):
    policy = write_policy(tmp_path / "p.json", models=("small", "medium", "huge"))
    with pytest.raises(ConfigError, match=r"policy-only \['huge'\], config-only \['large'\]"):
        build_gateway(policy, config(), environ=ENV)
    with pytest.raises(ConfigError, match="does not exist"):
        build_gateway(tmp_path / "none.json", config(), environ=ENV)
    (tmp_path / "junk.json").write_text("{")
    with pytest.raises(ConfigError, match="not a readable policy"):
        build_gateway(tmp_path / "junk.json", config(), environ=ENV)


def test_the_command_fails_at_start_up_with_a_clear_message(tmp_path):
    policy = write_policy(tmp_path / "p.json")
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(config()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEY_")}
    env["PYTHONPATH"] = str(ROOT / "python")
    cmd = [
        sys.executable,
        "-m",
        "cascade_routing.serve",
        "--policy",
        str(policy),
        "--config",
        str(cfg),
        "--check",
    ]
    missing = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2
    assert "KEY_SMALL is not set" in missing.stderr
    ok = subprocess.run(cmd, env={**env, **ENV}, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "CascadeRouter" in ok.stdout and "sk-test" not in ok.stdout + ok.stderr


def test_cascade_routing_serve_is_the_gateway_command(tmp_path, monkeypatch, capsys):
    from cascade_routing.cli import main

    policy = write_policy(tmp_path / "p.json")
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(config()))
    args = ["serve", "--policy", str(policy), "--config", str(cfg), "--check"]
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    assert main(args) == 2
    assert "KEY_SMALL is not set" in capsys.readouterr().err
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    assert main(args) == 0
    assert "CascadeRouter" in capsys.readouterr().out


def test_the_search_normals_are_ready_before_the_first_request(tmp_path):
    """A cold first request must not pay for building the search's normals (and importing
    SciPy): the gateway builds them at start-up, for every number of models left."""
    from cascade_routing import engine

    engine._normals_cache.clear()
    gw = build_gateway(write_policy(tmp_path / "p.json"), config(), environ=ENV)
    strat = gw.strategies["default"]
    for k in range(1, len(gw.models) + 1):
        assert (k, strat.n_samples, strat.sample_seed) in engine._normals_cache
