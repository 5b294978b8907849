"""Fake OpenAI-compatible upstreams and a helper to run ASGI apps as real servers on loopback.

Every server binds 127.0.0.1 on a free port chosen by the OS, runs uvicorn in a thread and
stops by itself at the end of its ``with`` block (a hung reply is bounded by ``hang_seconds``
and ends early when the server stops).
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cascade_routing import CascadeRouter, ConstantCost

LOOPBACK = "127.0.0.1"


class ServerThread:
    """Run an ASGI app under uvicorn on 127.0.0.1 in a daemon-less thread."""

    def __init__(self, app: Any, *, lifespan: str = "auto") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((LOOPBACK, 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan=lifespan,
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name=f"uvicorn-{self.port}"
        )

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
        assert not self.thread.is_alive(), "server thread did not stop"


class FakeUpstream:
    """An OpenAI-compatible ``/v1/chat/completions`` with scripted behaviour.

    ``script`` is consumed one entry per request; when empty, ``default`` applies. Entries:
    ``"ok"``, ``("delay", s)``, ``("429", retry_after)``, ``"500"``, ``"hang"``,
    ``"malformed"``, ``"nousage"``, ``"badshape"``.
    """

    def __init__(
        self,
        name: str,
        *,
        text: str = "42",
        logprob: float = -0.05,
        delay: float = 0.0,
        hang_seconds: float = 4.0,
    ) -> None:
        self.name = name
        self.text = text
        self.logprob = logprob
        self.delay = delay
        self.hang_seconds = hang_seconds
        self.script: deque[Any] = deque()
        self.default: Any = "ok"
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self._stop = threading.Event()
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])
        self.server: ServerThread | None = None

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return self.server.url + "/v1"

    def __enter__(self) -> FakeUpstream:
        self.server = ServerThread(self.app).__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        assert self.server is not None
        self.server.__exit__(*exc)

    def completion(self, body: dict[str, Any], *, usage: bool = True) -> dict[str, Any]:
        tokens = self.text.split(" ") if self.text else []
        out: dict[str, Any] = {
            "id": "up-" + self.name,
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", self.name),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": self.text},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
        }
        if body.get("logprobs"):
            out["choices"][0]["logprobs"] = {
                "content": [
                    {"token": t, "logprob": self.logprob, "bytes": None, "top_logprobs": []}
                    for t in tokens
                ]
            }
        if usage:
            chars = sum(len(m.get("content") or "") for m in body.get("messages", []))
            out["usage"] = {
                "prompt_tokens": math.ceil(chars / 4) + 4,
                "completion_tokens": len(tokens),
                "total_tokens": math.ceil(chars / 4) + 4 + len(tokens),
            }
        return out

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        self.auth.append(request.headers.get("authorization"))
        action = self.script.popleft() if self.script else self.default
        if self.delay:
            await asyncio.sleep(self.delay)
        kind = action[0] if isinstance(action, tuple) else action
        if kind == "delay":
            await asyncio.sleep(action[1])
            return JSONResponse(self.completion(body))
        if kind == "429":
            return JSONResponse(
                {"error": {"message": "slow down"}},
                status_code=429,
                headers={"Retry-After": str(action[1])},
            )
        if kind == "500":
            return JSONResponse({"error": {"message": "boom"}}, status_code=500)
        if kind == "hang":
            end = time.monotonic() + self.hang_seconds
            while time.monotonic() < end and not self._stop.is_set():
                await asyncio.sleep(0.05)
            return JSONResponse(self.completion(body))
        if kind == "malformed":
            return Response(b'{"choices": [ this is not json', media_type="application/json")
        if kind == "badshape":
            return JSONResponse({"choices": []})
        if kind == "nousage":
            return JSONResponse(self.completion(body, usage=False))
        return JSONResponse(self.completion(body))


MODELS = ("small", "medium", "large")
PRICES = {"small": (1e-7, 2e-7), "medium": (1e-6, 2e-6), "large": (1e-5, 2e-5)}
PRIORS = {"small": 0.55, "medium": 0.7, "large": 0.85}


def write_policy(path: Path, lam: float = 20.0, models: tuple[str, ...] = MODELS) -> Path:
    """A CascadeRouter policy over ``models`` with one multiplier (cost in $ × λ)."""
    k = len(models)

    class _Priors:
        def predict(self, queries: Any, answers: Any) -> Any:
            return np.tile(np.linspace(0.5, 0.9, k), (len(queries), 1))

    router = CascadeRouter(
        _Priors(),
        ConstantCost(np.linspace(1e-4, 1e-2, k)),
        list(models),
        max_depth=k,
        order=list(models),
        quality_bounds=(0.0, 1.0),
    )
    router.set_lambdas(lam)
    router.save(path)
    return path


def upstream_config(fakes: dict[str, FakeUpstream], **sections: Any) -> dict[str, Any]:
    """A config dict for the fakes (keys in the env variables FAKE_KEY_<NAME>)."""
    models = {}
    for name, fake in fakes.items():
        p_in, p_out = PRICES.get(name, (1e-6, 2e-6))
        models[name] = {
            "base_url": fake.base_url,
            "model": f"up-{name}",
            "price_in": p_in,
            "price_out": p_out,
            "api_key_env": f"FAKE_KEY_{name.upper()}",
            "logprobs": True,
            "timeout": 2.0,
            "prior_quality": PRIORS.get(name, 0.6),
            "prior_sd": 0.2,
            "expected_output_tokens": 50,
        }
    cfg: dict[str, Any] = {
        "models": models,
        "retry": {
            "max_attempts": 2,
            "base_delay": 0.01,
            "max_delay": 0.05,
            "max_retry_after": 1.0,
            "seed": 0,
        },
        "breaker": {"failure_threshold": 3, "cooldown": 0.5},
        "server": {"deadline": 8.0, "call_timeout": 3.0},
    }
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    return cfg


def fake_env(names: Any) -> dict[str, str]:
    return {f"FAKE_KEY_{n.upper()}": f"sk-secret-{n}-0123456789" for n in names}


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
