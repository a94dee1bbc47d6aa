"""`make run`: every service supervised, the instructions it prints work, `make demo` passes
against it, a crashed service is restarted, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tenantflow.devinfra.processes import free_port
from tenantflow.devinfra.services import SERVICES
from tenantflow.devinfra.testing import eventually

pytestmark = pytest.mark.e2e


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def processes_under(directory: Path) -> list[int]:
    """Processes whose command line names ``directory`` (the broker, PostgreSQL, the emulator)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(directory) in command and alive(int(entry.name)):
                found.append(int(entry.name))
    return found


async def metrics(port: int) -> dict[tuple[str, str, str], float]:
    """A service's /metrics, summed by (sample name, the label that matters, its value)."""
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(f"http://127.0.0.1:{port}/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    found: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            labels = dict(sample.labels)
            labels.pop("service", None)
            if sample.name == "tenantflow_graph_calls_total":
                key = (sample.name, "call", f"{labels['method']} {labels['status']}")
            elif labels:
                label = sorted(labels)[-1] if "outcome" not in labels else "outcome"
                key = (sample.name, label, labels[label])
            else:
                key = (sample.name, "", "")
            found[key] = found.get(key, 0.0) + sample.value
    return found


async def test_run_supervises_every_service_and_leaves_nothing_behind(tmp_path: Path) -> None:
    ports = {service.name: free_port() for service in SERVICES.values()}
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TENANTFLOW_", "KAFKA_"))},
        "TENANTFLOW_INFRA_DIR": str(tmp_path / "infra"),
        # the emulator, whatever a developer's own .env says
        "TENANTFLOW_ENV_FILE": str(tmp_path / "no.env"),
        "TENANTFLOW_EMULATOR_PORT": str(free_port()),
        **{f"{s.env_prefix}PORT": str(ports[s.name]) for s in SERVICES.values()},
        **{f"{s.env_prefix}LOG_FORMAT": "json" for s in SERVICES.values()},
    }
    environment.pop("DATABASE_URL", None)
    log = tmp_path / "run.log"
    with log.open("w") as sink:
        supervisor = subprocess.Popen(  # noqa: ASYNC220 - its exit is awaited in a thread
            [sys.executable, "-m", "tenantflow.devinfra.run"],
            env=environment,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        output = lambda: log.read_text(errors="replace")  # noqa: E731

        async def every_service_ready() -> bool:
            assert supervisor.poll() is None, output()[-4000:]
            async with httpx.AsyncClient(timeout=5) as client:
                for port in ports.values():
                    try:
                        answer = await client.get(f"http://127.0.0.1:{port}/readyz")
                    except httpx.TransportError:
                        return False
                    if answer.status_code != 200:
                        return False
            return True

        await eventually(every_service_ready, within=180, what="every service ready")

        # the demo token it prints opens the portal API it names
        token_line = next(line for line in output().splitlines() if "a demo token" in line)
        ca, url, body = re.search(r"--cacert (\S+) -X POST (\S+) -d '(.+)'", token_line).groups()  # type: ignore[union-attr]
        async with httpx.AsyncClient(verify=ca, timeout=10) as emulator:
            token = (await emulator.post(url, content=body)).json()["access_token"]
        portal = f"http://127.0.0.1:{ports['portal-api']}"
        assert f"portal API: {portal}/v1" in output()
        async with httpx.AsyncClient(base_url=portal, timeout=10) as client:
            answer = await client.get("/v1/tenants", headers={"authorization": f"Bearer {token}"})
            assert answer.status_code == 200, answer.text
            assert (await client.get("/openapi.json")).status_code == 200

        # make demo against it: the whole journey, every step passing
        demo = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "tenantflow.devinfra.demo"],
            env=environment,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        assert demo.stdout.count(": applied") == 2, demo.stdout
        assert "deployment.change.applied" in demo.stdout  # the audit timeline
        assert "every step passed" in demo.stdout

        # every service's Prometheus metrics tell what the demo did
        samples = {name: await metrics(port) for name, port in ports.items()}
        assert samples["intune-writer"][("tenantflow_changes_ended_total", "state", "applied")] == 2
        writer_graph = [
            value
            for (name, label, status), value in samples["intune-writer"].items()
            if name == "tenantflow_graph_calls_total" and status.startswith("POST 2")
        ]
        assert sum(writer_graph) >= 2  # the app created, its assignments written
        for name in ports:
            assert samples[name][("tenantflow_events_published_total", "", "")] > 0, name
            assert ("tenantflow_outbox_backlog", "", "") in samples[name], name
        handled = ("tenantflow_events_consumed_total", "outcome", "handled")
        assert samples["portal-api"][handled] > 0
        # latency histograms: each change from verified to applied, Graph calls, portal
        # requests (by route template, never by the ids in a path), each hop's delivery
        writer = samples["intune-writer"]
        assert writer[("tenantflow_change_seconds_count", "state", "applied")] == 2
        assert writer[("tenantflow_graph_call_seconds_count", "method", "POST")] >= 2
        # the answers inside JSON batches: the two apps' writes went in batches
        assert writer[("tenantflow_graph_batch_items_total", "throttle_scope", "")] >= 2
        portal = samples["portal-api"]
        assert portal[("tenantflow_http_request_seconds_count", "status", "202")] >= 2
        delivered = ("tenantflow_event_delivery_seconds_count", "consumer", "portal-api.results")
        assert portal[delivered] > 0
        # each consumer group's lag per partition: nothing left behind once the demo is done
        lags = [v for (name, _, _), v in portal.items() if name == "tenantflow_consumer_lag"]
        assert lags
        assert sum(lags) == 0
        async with httpx.AsyncClient(timeout=10) as client:
            exposed = (await client.get(f"http://127.0.0.1:{ports['portal-api']}/metrics")).text
        assert 'route="/v1/tenants/{tenant_id}/deployments/{app}"' in exposed
        assert not re.search(r'route="[^"]*[0-9a-f]{8}-[0-9a-f]{4}-', exposed)

        # LOG_FORMAT=json: every service line is a JSON object, and what was logged while a
        # tenant's work went on names the tenant
        lines = [
            json.loads(line.split(" | ", 1)[1])
            for line in output().splitlines()
            if " | " in line and not line.lstrip().startswith("run |")
        ]
        assert {line["service"] for line in lines} == set(ports)
        contoso = re.search(r'"tenant_id": "([0-9a-f-]{36})"', token_line).group(1)  # type: ignore[union-attr]
        assert any(line["tenant_id"] == contoso for line in lines), lines[-20:]

        # a service killed outright is started again, and the restart is logged
        started = re.findall(r"intune-writer started \(pid (\d+)\)", output())
        assert len(started) == 1
        os.kill(int(started[0]), signal.SIGKILL)
        await eventually(
            lambda: (
                "intune-writer exited with status -9" in output()
                and len(re.findall(r"intune-writer started \(pid (\d+)\)", output())) == 2
            ),
            within=60,
            what="the writer restarted",
        )
        assert "restart 1 in 1 s" in output()
        await eventually(every_service_ready, within=120, what="the writer ready again")

        # Ctrl-C: the terminal signals the supervisor's process group only (each service has
        # its own), and the supervisor stops everything it started
        pids = [int(pid) for pid in re.findall(r"started \(pid (\d+)\)", output())]
        supervisor.send_signal(signal.SIGINT)
        await asyncio.to_thread(supervisor.wait, 120)
        assert output().rstrip().endswith("stopped"), output()[-2000:]
        assert not [pid for pid in pids if alive(pid)]
        assert not processes_under(tmp_path)
        assert not (tmp_path / "run.json").exists()  # make demo finds nothing running now
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
