"""`python -m tenantflow.emulator` / `tenantflow-emulator`: serve Entra ID and Graph over HTTPS.

Prints one line `TENANTFLOW_EMULATOR_URL=https://…` and one `TENANTFLOW_EMULATOR_CA=…` when ready.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys

import uvicorn

from tenantflow.emulator.app import Emulator
from tenantflow.emulator.settings import EmulatorSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tenantflow-emulator", description=__doc__)
    parser.add_argument("--port", type=int, help="0 picks a free port")
    parser.add_argument("--state-dir", help="CA, server and app certificates")
    args = parser.parse_args(argv)
    overrides: dict[str, object] = {}
    if args.port is not None:
        overrides["port"] = args.port
    if args.state_dir:
        overrides["state_dir"] = args.state_dir
    settings = EmulatorSettings(**overrides)  # type: ignore[arg-type]

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted connections inherit it; without it a response's TLS records wait ~40 ms for the
    # client's delayed ACK (Nagle), which capped the emulator at ~23 requests/s per connection
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((settings.host, settings.port))
    port = sock.getsockname()[1]
    base_url = f"https://{settings.public_host}:{port}"
    emulator = Emulator(settings, base_url)
    emulator.authority.ensure([settings.public_host, "127.0.0.1"])
    config = uvicorn.Config(
        emulator.asgi(),
        ssl_certfile=str(emulator.authority.server_cert_path),
        ssl_keyfile=str(emulator.authority.server_key_path),
        log_level="warning",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)

    async def serve() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                await task
                return
            await asyncio.sleep(0.01)
        print(f"TENANTFLOW_EMULATOR_URL={base_url}", flush=True)
        print(f"TENANTFLOW_EMULATOR_CA={emulator.authority.ca_path.resolve()}", flush=True)
        await task

    asyncio.run(serve())
    sys.exit(0)


if __name__ == "__main__":
    main()
