"""`make chaos` in the time `make test` has for it: every fault of the full run (each service,
the broker and PostgreSQL killed with SIGKILL and restarted, a 429 storm, a 5xx storm, poison
records) during a smaller run, and every check of the full run at the end. `make chaos` runs the
full size (1,000 changes across 50 tenants) on its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenantflow.devinfra.chaos import Plan, print_report, run

pytestmark = pytest.mark.e2e

SHORT = Plan(tenants=6, changes=150, seconds=90.0, outage_s=3.0, settle_s=240.0)


@pytest.mark.timeout(900)
async def test_every_change_survives_crashes_restarts_storms_and_poison(tmp_path: Path) -> None:
    report = await run(SHORT, tmp_path)
    print_report(report)
    assert [fault.fault for fault in report.faults] == [
        "Graph 429 storm on the writer's calls",
        "SIGKILL intune-writer",
        "Graph 5xx storm on every Graph call",
        "SIGKILL consent",
        "poison records",
        "SIGKILL directory-sync",
        "SIGKILL portal-api",
        "SIGKILL the Kafka broker",
        "SIGKILL PostgreSQL (server and backends)",
        "SIGKILL intune-writer",
    ]
    # every fault happened (a kill found its process running, a storm fired)
    assert all("not running" not in fault.outcome for fault in report.faults), report.faults
    assert all(fault.fired for fault in report.faults if "storm" in fault.fault), report.faults
    failed = {name: check for name, check in report.checks.items() if not check["ok"]}
    assert not failed, failed
    assert report.requests["accepted"] + report.requests["accepted (answer lost)"] >= (
        SHORT.changes * 0.8
    ), report.requests
