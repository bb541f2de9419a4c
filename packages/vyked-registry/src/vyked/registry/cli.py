"""``vyked-registry`` / ``python -m vyked.registry``: run the registry from a shell."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from vyked.registry.server import Registry


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vyked-registry", description="Run the vyked service registry.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=4500, help="port to listen on (default: 4500)")
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        help="logging level (default: INFO)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    Registry(args.host, args.port).start()
    return 0
