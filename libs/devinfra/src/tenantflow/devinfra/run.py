"""`make run`: local Kafka and PostgreSQL (unless already up or external), the Entra ID and
Graph emulator with its demo tenants (unless TENANTFLOW_GRAPH_BASE_URL points at the real
thing), then every service.

Output is prefixed with the service's name. Ctrl-C or SIGTERM stops the services (each gets a
SIGTERM and a graceful shutdown), then the infrastructure this command started itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

from tenantflow.devinfra.infra import LocalInfra
from tenantflow.devinfra.processes import InfraError
from tenantflow.devinfra.services import SERVICES
from tenantflow.emulator.testing import start_emulator


def _pipe(name: str, stream: IO[bytes]) -> None:
    for line in iter(stream.readline, b""):
        sys.stdout.write(f"{name:>15} | {line.decode(errors='replace')}")
        sys.stdout.flush()


def _microsoft_endpoints(state_dir: Path) -> tuple[dict[str, str], subprocess.Popen[str] | None]:
    """Where Entra ID and Graph are: the environment's, or an emulator started here. The names
    come back without a prefix; each service gets them under its own (TENANTFLOW_CONSENT_…)."""
    if os.environ.get("TENANTFLOW_GRAPH_BASE_URL"):
        return {}, None
    port = os.environ.get("TENANTFLOW_EMULATOR_PORT", "8443")
    try:
        emulator, running = start_emulator(state_dir, "--port", port, "--seed", "demo")
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from exc
    url, ca = running.url, running.ca
    print(f"emulator on {url} (CA {ca}); demo tenants Contoso and Fabrikam")
    return {"LOGIN_BASE_URL": url, "GRAPH_BASE_URL": url, "CA_BUNDLE": ca}, emulator


def main() -> None:
    workdir = Path(os.environ.get("TENANTFLOW_INFRA_DIR", ".local/infra")).resolve()
    infra = LocalInfra.from_state(workdir)
    started_here = infra is None
    if infra is None:
        infra = LocalInfra(workdir=workdir)
        try:
            infra.start()
        except InfraError as exc:
            print(f"tenantflow run: {exc}", file=sys.stderr)
            raise SystemExit(2) from exc
    print("infrastructure:", *(f"{k}={v}" for k, v in infra.environment().items()))
    microsoft, emulator = _microsoft_endpoints(workdir.parent / "emulator")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for service in SERVICES.values():
            port = os.environ.get(f"{service.env_prefix}PORT", str(service.port))
            env = {
                **os.environ,
                **infra.environment(),
                **{f"{service.env_prefix}{name}": value for name, value in microsoft.items()},
                f"{service.env_prefix}PORT": port,
                f"{service.env_prefix}HOST": os.environ.get(
                    f"{service.env_prefix}HOST", "127.0.0.1"
                ),
            }
            process = subprocess.Popen(
                [sys.executable, "-m", service.module],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            assert process.stdout is not None
            threading.Thread(target=_pipe, args=(service.name, process.stdout), daemon=True).start()
            processes.append(process)
            print(f"{service.name} on http://127.0.0.1:{port} (/healthz, /readyz)")
        while not stop.wait(0.5):
            if any(p.poll() is not None for p in processes):
                print("a service exited; stopping the others", file=sys.stderr)
                break
    except KeyboardInterrupt:
        pass
    finally:
        everything: list[subprocess.Popen[bytes] | subprocess.Popen[str]] = [*processes]
        if emulator is not None:
            everything.append(emulator)
        for child in everything:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in everything:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
        if started_here:
            infra.stop()


if __name__ == "__main__":
    main()
