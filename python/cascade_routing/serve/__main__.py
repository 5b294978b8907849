"""``python -m cascade_routing.serve --policy policy.json --config upstreams.yaml``.

Checks the policy and the configuration (API key variables, models) before listening; any
problem ends the command with status 2 and a message naming it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cascade-routing serve",
        description="Serve a saved policy as an OpenAI-compatible gateway.",
    )
    p.add_argument("--policy", required=True, help="policy JSON written by Strategy.save")
    p.add_argument("--config", required=True, help="upstream config (YAML or JSON)")
    p.add_argument("--host", default=None, help="override server.host (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="override server.port")
    p.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="validate the policy and config, then exit without serving",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from .config import ConfigError
    from .gateway import build_gateway

    try:
        gateway = build_gateway(args.policy, args.config)
    except ConfigError as exc:
        print(f"cascade-routing serve: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(f"ok: {gateway.kind} over {list(gateway.models)}")
        return 0
    import uvicorn

    server = gateway.config.server
    uvicorn.run(
        gateway.app(),
        host=args.host or server.host,
        port=args.port or server.port,
        log_level=args.log_level,
        access_log=False,
        lifespan="on",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
