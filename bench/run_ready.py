"""`make run` to ready: local Kafka and PostgreSQL started afresh, the emulator with its demo
tenants and the four services, until every service answers /readyz with 200; then Ctrl-C, and
the next run.

Prints the figures and writes JSON to bench/results/run_ready.json.

    uv run python bench/run_ready.py [--runs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tenantflow.devinfra.processes import free_port
from tenantflow.devinfra.services import SERVICES

ROOT = Path(__file__).resolve().parents[1]
READY_DEADLINE_S = 300.0


def until_ready() -> float:
    """One `make run` from nothing to every service ready; its seconds."""
    workdir = Path(tempfile.mkdtemp(prefix="tenantflow-run-ready-"))
    ports = {service.name: free_port() for service in SERVICES.values()}
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("TENANTFLOW_", "KAFKA_")) and name != "DATABASE_URL"
    }
    environment |= {
        "TENANTFLOW_INFRA_DIR": str(workdir / "infra"),
        "TENANTFLOW_ENV_FILE": str(workdir / "no.env"),  # the emulator
        "TENANTFLOW_EMULATOR_PORT": str(free_port()),
        **{f"{s.env_prefix}PORT": str(ports[s.name]) for s in SERVICES.values()},
    }
    began = time.monotonic()
    with (workdir / "run.log").open("w") as log:
        run = subprocess.Popen(
            [sys.executable, "-m", "tenantflow.devinfra.run"],
            cwd=ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        with httpx.Client(timeout=2) as client:
            while True:
                ready = 0
                for port in ports.values():
                    with contextlib.suppress(httpx.TransportError):
                        ready += client.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
                if ready == len(ports):
                    return round(time.monotonic() - began, 1)
                if run.poll() is not None or time.monotonic() - began > READY_DEADLINE_S:
                    output = (workdir / "run.log").read_text(errors="replace")
                    raise SystemExit(f"make run was not ready:\n{output[-3000:]}")
                time.sleep(0.1)  # polling /readyz as an operator's probe would
    finally:
        run.send_signal(signal.SIGINT)
        try:
            run.wait(timeout=120)
        except subprocess.TimeoutExpired:
            run.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = [until_ready() for _ in range(args.runs)]
    print(f"make run -> every service ready: median {statistics.median(runs)} s of {runs}")
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "run_ready.json").write_text(
        json.dumps(
            {
                "benchmark": "run_ready",
                "seconds": runs,
                "median_s": statistics.median(runs),
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
