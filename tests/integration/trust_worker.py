"""A TCP service process for the trust tests: legitimate, or a rogue posing as another service.

python trust_worker.py --registry HOST:PORT [--name Calc] [--rogue]
                       [--serve-cert PEM --serve-key PEM [--serve-ca PEM]]

The cluster secret and TLS settings come from the environment (``VYKED_SECRET``,
``VYKED_TLS_*``), as in production. ``--serve-cert``/``--serve-key`` serve the RPC port with
that certificate instead of the host's (a service whose own certificate is bad, on a host that
is otherwise trusted).

Prints, one line each:

- ``READY pid=<pid> port=<port>`` once the service is registered;
- ``REFUSED <ExceptionClass> code=<code>: <message>`` if the host could not start;
- ``LISTENING port=<port>`` (``--rogue`` only): the rogue serves its port anyway, unregistered,
  so that any call routed to it shows;
- ``CALL <n>`` for every call this process answers.

A rogue keeps running after a refusal (until terminated); a legitimate service exits with 3.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
from typing import Any

from vyked import TCPService, VykedError, api
from vyked.core.service_host import ServiceHost
from vyked.core.serving import serve_until_signalled


class Whoami(TCPService):
    def __init__(self, name: str, ssl_context: ssl.SSLContext | None) -> None:
        super().__init__(name, 1, "127.0.0.1", 0, ssl_context)
        self.calls = 0
        self.role = "service"

    @api
    async def whoami(self) -> dict[str, Any]:
        self.calls += 1
        print(f"CALL {self.calls}", flush=True)
        return {"pid": os.getpid(), "role": self.role}


def serving_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not args.serve_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.serve_cert, args.serve_key)
    if args.serve_ca:
        context.load_verify_locations(args.serve_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


async def main(args: argparse.Namespace) -> int:
    service = Whoami(args.name, serving_context(args))
    service.role = "rogue" if args.rogue else "service"
    host = ServiceHost(args.registry, name=service.role)
    host.attach(service)
    try:
        await host.start()
    except VykedError as exc:
        print(f"REFUSED {type(exc).__name__} code={exc.code}: {exc}", flush=True)
        if not args.rogue:
            return 3
        # unregistered, but listening: a call that reached it would show as CALL lines
        await service.start(ServiceHost(args.registry))
        print(f"LISTENING port={service.host_port}", flush=True)
        await asyncio.Event().wait()
        return 0
    print(f"READY pid={os.getpid()} port={service.host_port}", flush=True)

    async def stop() -> None:
        await host.stop()

    async def started() -> None:
        pass

    await serve_until_signalled(started, stop)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--registry", required=True)
    parser.add_argument("--name", default="Calc")
    parser.add_argument("--rogue", action="store_true")
    parser.add_argument("--serve-cert")
    parser.add_argument("--serve-key")
    parser.add_argument("--serve-ca")
    raise SystemExit(asyncio.run(main(parser.parse_args())))
