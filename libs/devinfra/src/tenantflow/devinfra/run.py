"""`make run`: local Kafka and PostgreSQL (unless already up or external), the Entra ID and
Graph emulator with its demo tenants (unless TENANTFLOW_GRAPH_BASE_URL points at the real
thing), then every service.

Each service runs as a supervised process: one that exits is started again after a backoff
(1 s, doubling up to 30 s; back to 1 s once it ran a minute), and each restart is logged. Output
is prefixed with the service's name. Ctrl-C or SIGTERM stops the services (each gets a SIGTERM
and a graceful shutdown, in its own process group so the terminal's Ctrl-C reaches only this
supervisor), then the emulator and the infrastructure this command started itself; a service
whose supervisor is killed outright is ended by the kernel (parent-death signal).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from dotenv import dotenv_values

from tenantflow.devinfra.infra import LocalInfra
from tenantflow.devinfra.processes import InfraError, die_with_parent
from tenantflow.devinfra.services import (
    SERVICES,
    MicrosoftNotConfigured,
    Service,
    emulated_microsoft,
    entra_microsoft,
)
from tenantflow.emulator.seeds import demo_tenants
from tenantflow.emulator.testing import start_emulator

INITIAL_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
STABLE_S = 60.0
"""A service that ran this long before it exited is restarted after the initial backoff again."""


def run_state_file() -> Path:
    """Where `make run` says what it started (the portal, the emulator and its CA), for
    `make demo`; removed when it stops."""
    workdir = Path(os.environ.get("TENANTFLOW_INFRA_DIR", ".local/infra")).resolve()
    return workdir.parent / "run.json"


def say(text: str) -> None:
    sys.stdout.write(f"{'run':>15} | {text}\n")
    sys.stdout.flush()


@dataclass
class Supervised:
    """One service under `make run`: its process, and when to start it again if it exits."""

    service: Service
    env: Mapping[str, str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    crashes: int = 0
    """Exits in a row, each after less than ``STABLE_S``."""
    restarts: int = 0
    next_start: float = 0.0
    log: Path | None = None
    """Where its output goes (appended across restarts); None: this process's output, each
    line prefixed with the service's name."""

    def start(self, now: float) -> None:
        sink = self.log.open("ab") if self.log else None
        self.process = subprocess.Popen(
            self.service.command,
            env=dict(self.env),
            stdout=sink or subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGTERM),
        )
        self.started_at = now
        say(f"{self.service.name} started (pid {self.process.pid})")
        if sink:
            sink.close()
            return
        assert self.process.stdout is not None
        threading.Thread(
            target=_pipe, args=(self.service.name, self.process.stdout), daemon=True
        ).start()

    def watch(self, now: float) -> None:
        """Start the service when it is due; note an exit and when to start it again."""
        if self.process is not None and self.process.poll() is not None:
            ran = now - self.started_at
            self.crashes = 0 if ran >= STABLE_S else self.crashes + 1
            delay = min(MAX_BACKOFF_S, INITIAL_BACKOFF_S * 2 ** max(0, self.crashes - 1))
            self.restarts += 1
            say(
                f"{self.service.name} exited with status {self.process.returncode} after "
                f"{ran:.1f} s; restart {self.restarts} in {delay:.0f} s"
            )
            self.process, self.next_start = None, now + delay
        if self.process is None and now >= self.next_start:
            self.start(now)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)


def _pipe(name: str, stream: IO[bytes]) -> None:
    for line in iter(stream.readline, b""):
        sys.stdout.write(f"{name:>15} | {line.decode(errors='replace')}")
        sys.stdout.flush()


@dataclass
class Microsoft:
    """Entra ID and Graph for this run: each service's settings (without prefix), and the
    emulator when it runs them."""

    settings: dict[str, dict[str, str]]
    emulator: subprocess.Popen[str] | None = None
    emulator_url: str | None = None
    ca: str | None = None


def load_env_file() -> Path | None:
    """The variables of ``.env`` (or ``TENANTFLOW_ENV_FILE``) that the environment does not set
    already, for this process and every service it starts."""
    path = Path(os.environ.get("TENANTFLOW_ENV_FILE", ".env"))
    if not path.is_file():
        return None
    for name, value in dotenv_values(path).items():
        if value is not None:
            os.environ.setdefault(name, value)
    return path


def _entra() -> Microsoft | None:
    """With ``TENANTFLOW_MICROSOFT=entra``: the real Entra ID and Graph and tenantflow's app
    registrations there (see .env.example); None for the emulator. Checked before anything
    starts, so a setting missing stops the run at once."""
    mode = os.environ.get("TENANTFLOW_MICROSOFT", "emulator")
    if mode == "emulator":
        return None
    if mode != "entra":
        raise SystemExit(f"tenantflow run: TENANTFLOW_MICROSOFT is emulator or entra, not {mode}")
    try:
        apps = entra_microsoft(os.environ)
    except MicrosoftNotConfigured as exc:
        raise SystemExit(f"tenantflow run: {exc}") from exc
    print(f"Entra ID on {apps.login_base_url}, Microsoft Graph on {apps.graph_base_url}")
    return Microsoft(apps.settings())


def _emulator(state_dir: Path) -> Microsoft:
    """The emulator with its demo tenants, and the services' settings for it."""
    port = os.environ.get("TENANTFLOW_EMULATOR_PORT", "8443")
    try:
        emulator, running = start_emulator(state_dir, "--port", port, "--seed", "demo")
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from exc
    print(f"emulator on {running.url} (CA {running.ca}); demo tenants Contoso and Fabrikam")
    return Microsoft(emulated_microsoft(running), emulator, running.url, running.ca)


def main() -> None:
    env_file = load_env_file()
    if env_file is not None:
        print(f"settings from {env_file}")
    entra = _entra()
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
    microsoft = entra or _emulator(workdir.parent / "emulator")
    emulator = microsoft.emulator
    stop = threading.Event()
    # Ctrl-C and SIGTERM both ask for an orderly stop: a second Ctrl-C does not cut the
    # stopping short, and a SIGINT a parent set to be ignored (a background job) still stops it
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    supervised = [
        Supervised(
            service, _environment(service, infra.environment(), microsoft.settings[service.name])
        )
        for service in SERVICES.values()
    ]
    try:
        now = time.monotonic()
        for each in supervised:
            each.start(now)
        portal = _portal_url(supervised)
        _print_welcome(supervised, portal, microsoft)
        run_state_file().write_text(
            json.dumps(
                {
                    "portal": portal,
                    "emulator": microsoft.emulator_url,
                    "ca": microsoft.ca,
                }
            )
        )
        while not stop.wait(0.2):  # the supervisor's own pace, not a synchronisation
            now = time.monotonic()
            for each in supervised:
                each.watch(now)
    except KeyboardInterrupt:
        pass
    finally:
        say("stopping")
        run_state_file().unlink(missing_ok=True)
        for each in supervised:
            each.stop()
        if emulator is not None and emulator.poll() is None:
            emulator.send_signal(signal.SIGTERM)
        children: list[subprocess.Popen[bytes] | subprocess.Popen[str]] = [
            each.process for each in supervised if each.process is not None
        ]
        if emulator is not None:
            children.append(emulator)
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
        if started_here:
            infra.stop()
        say("stopped")


def _environment(
    service: Service, infrastructure: Mapping[str, str], microsoft: Mapping[str, str]
) -> dict[str, str]:
    """The service's environment under `make run`: its port and host unless set already."""
    prefix = service.env_prefix
    return service.environment(
        infrastructure,
        microsoft,
        port=os.environ.get(f"{prefix}PORT", service.port),
        host=os.environ.get(f"{prefix}HOST", "127.0.0.1"),
    )


def _url(each: Supervised) -> str:
    return f"http://127.0.0.1:{each.env[f'{each.service.env_prefix}PORT']}"


def _portal_url(supervised: list[Supervised]) -> str:
    return _url(next(each for each in supervised if each.service.name == "portal-api"))


def _print_welcome(supervised: list[Supervised], url: str, microsoft: Microsoft) -> None:
    for each in supervised:
        say(f"{each.service.name} on {_url(each)} (/healthz, /readyz)")
    say(f"portal API: {url}/v1 — OpenAPI {url}/openapi.json, docs {url}/docs")
    say(f"AsyncAPI (the events): {Path('contracts/asyncapi.json').resolve()}")
    if microsoft.emulator_url:
        contoso = demo_tenants()[0]
        admin = contoso["users"][0]  # a Global Administrator
        body = json.dumps(
            {"tenant_id": contoso["id"], "user_id": admin["id"], "roles": ["Tenantflow.Admin"]}
        )
        say(
            f"a demo token ({admin['display_name']}, admin of {contoso['display_name']}): "
            f"curl --cacert {microsoft.ca} -X POST "
            f"{microsoft.emulator_url}/_emulator/tokens -d '{body}'"
        )
    else:
        client = microsoft.settings["portal-api"]["CLIENT_ID"]
        say(
            f"tokens: Entra ID issues them to your portal front end for the API {client} "
            f"(scope api://{client}/.default or your App ID URI's), with the user's app roles"
        )
    say("Ctrl-C stops everything")


if __name__ == "__main__":
    main()
