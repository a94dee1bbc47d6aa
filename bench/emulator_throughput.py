"""Emulator throughput: simple Graph GETs per second, over TLS with keep-alive, with the
emulator pinned to one core and throttling off, so it is never what a benchmark measures.

The load comes from a separate process on the other core: an asyncio HTTP/1.1 client over
several keep-alive TLS connections, each sending GET /v1.0/organization with a real token.
Prints the figures and writes JSON to bench/results/.

    uv run python bench/emulator_throughput.py [--seconds 10] [--connections 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit
from uuid import uuid4

from tenantflow.emulator.testing import start_emulator

ROOT = Path(__file__).resolve().parents[1]


def pinned(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") and os.cpu_count() else []


async def connection(
    host: str,
    port: int,
    context: ssl.SSLContext,
    request: bytes,
    deadline: float,
    latencies: list[float],
) -> int:
    reader, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=host)
    done = 0
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            headers = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in headers.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if not headers.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(headers.decode(errors="replace"))
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            done += 1
    finally:
        writer.close()
    return done


async def load(url: str, ca: str, token: str, seconds: float, connections: int) -> dict[str, float]:
    parts = urlsplit(url)
    host, port = parts.hostname or "localhost", parts.port or 443
    context = ssl.create_default_context(cafile=ca)
    request = (
        f"GET /v1.0/organization HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    ).encode()
    latencies: list[float] = []
    warmup_deadline = time.perf_counter() + 1.0
    await asyncio.gather(
        *(connection(host, port, context, request, warmup_deadline, []) for _ in range(connections))
    )
    started = time.perf_counter()
    counts = await asyncio.gather(
        *(
            connection(host, port, context, request, started + seconds, latencies)
            for _ in range(connections)
        )
    )
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": sum(counts),
        "seconds": round(elapsed, 2),
        "requests_per_s": round(sum(counts) / elapsed, 1),
        "median_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        url, ca, token, seconds, connections = sys.argv[2:7]
        print(json.dumps(asyncio.run(load(url, ca, token, float(seconds), int(connections)))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tenantflow-bench-") as state:
        env = {**os.environ, "TENANTFLOW_EMULATOR_THROTTLING": "false"}
        emulator, emulator_api = start_emulator(Path(state), prefix=pinned(0), env=env)
        try:
            tenant = str(uuid4())
            url, ca, apps = emulator_api.url, emulator_api.ca, emulator_api.apps
            emulator_api.seed(
                {
                    "id": tenant,
                    "display_name": "Bench",
                    "verified_domains": ["bench.example"],
                    "enterprise_apps": [
                        {
                            "app_id": apps["directory-connector"]["client_id"],
                            "permissions": ["Directory.Read.All"],
                        }
                    ],
                }
            )
            token = emulator_api.app_token("directory-connector", tenant)
            loader = subprocess.run(
                [
                    *pinned(1),
                    sys.executable,
                    __file__,
                    "--load",
                    url,
                    ca,
                    token,
                    str(args.seconds),
                    str(args.connections),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
        finally:
            emulator.terminate()
            emulator.wait(10)
    result = {
        "benchmark": "emulator_graph_get_throughput",
        "emulator_cores": 1,
        "connections": args.connections,
        **json.loads(loader.stdout),
    }
    print(
        f"emulator, GET /v1.0/organization over TLS keep-alive, one core, "
        f"{args.connections} connections: {result['requests_per_s']} requests/s "
        f"(median {result['median_ms']} ms, p99 {result['p99_ms']} ms)"
    )
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "emulator_throughput.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
