"""`python -m tenantflow.emulator` / `tenantflow-emulator`: serve Entra ID and Graph over HTTPS.

Prints one line `TENANTFLOW_EMULATOR_URL=https://…` and one `TENANTFLOW_EMULATOR_CA=…` when ready.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import uvicorn
import yaml

from tenantflow.emulator.app import Emulator
from tenantflow.emulator.seeds import demo_tenants, synthetic_tenant
from tenantflow.emulator.settings import EmulatorSettings
from tenantflow.emulator.state import SeedTenant

LARGE_TENANT = UUID("9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b")


def seed_documents(
    seeds: list[str], generate: str | None, settings: EmulatorSettings
) -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for seed in seeds:
        if seed == "demo":
            documents += demo_tenants(settings)
            continue
        loaded = yaml.safe_load(Path(seed).read_text())  # JSON is YAML too
        documents += loaded if isinstance(loaded, list) else [loaded]
    if generate:
        users, groups, devices = (int(n) for n in generate.split(","))
        documents.append(
            synthetic_tenant(
                LARGE_TENANT,
                "Synthetic",
                "synthetic.example",
                users,
                groups,
                devices,
                consented={
                    "directory-connector": ["Directory.Read.All"],
                    "intune-writer": ["DeviceManagementApps.ReadWrite.All"],
                },
                settings=settings,
            )
        )
    return documents


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tenantflow-emulator", description=__doc__)
    parser.add_argument("--port", type=int, help="0 picks a free port")
    parser.add_argument("--state-dir", help="CA, server and app certificates")
    parser.add_argument(
        "--seed",
        action="append",
        default=[],
        help="'demo', or a JSON/YAML file with a tenant document or a list of them; repeatable",
    )
    parser.add_argument(
        "--generate",
        metavar="USERS,GROUPS,DEVICES",
        help="add a synthetic tenant of that size (e.g. 50000,5000,60000), consented",
    )
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
    for document in seed_documents(args.seed, args.generate, settings):
        emulator.add_tenant(SeedTenant.model_validate(document))
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
