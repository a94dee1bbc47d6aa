"""`make demo`: the whole journey against the system `make run` started, as a portal user.

As Contoso's Global Administrator (a token from the emulator's Entra ID): link the tenant, turn
on Intune writing, wait for the directory, deploy two catalog apps (one required to a group,
one available to a group with another group excluded), wait until Intune holds them, then print
the deployments' statuses and the tenant's audit timeline. Every wait has a deadline; any step
that fails ends the demo with a non-zero status and says which step.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tenantflow.devinfra.run import run_state_file
from tenantflow.emulator.seeds import demo_tenants

DEADLINE_S = 120.0


class DemoFailed(Exception):
    pass


def wait_for(what: str, check: Callable[[], Any], within: float = DEADLINE_S) -> Any:
    """``check()`` until it returns something truthy; ``DemoFailed`` at the deadline."""
    deadline = time.monotonic() + within
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise DemoFailed(f"{what}: not within {within:.0f} s")
        time.sleep(0.5)  # polling the API as a user would


def step(text: str) -> None:
    print(f"· {text}", flush=True)


def expect(answer: httpx.Response, *statuses: int) -> httpx.Response:
    if answer.status_code not in statuses:
        raise DemoFailed(
            f"{answer.request.method} {answer.request.url.path} answered {answer.status_code}: "
            f"{answer.text[:500]}"
        )
    return answer


def demo(state: dict[str, str]) -> None:
    contoso = demo_tenants()[0]
    admin = contoso["users"][0]
    tenant = contoso["id"]
    with httpx.Client(verify=state["ca"], timeout=30) as entra:
        token = expect(
            entra.post(
                f"{state['emulator']}/_emulator/tokens",
                json={"tenant_id": tenant, "user_id": admin["id"], "roles": ["Tenantflow.Admin"]},
            ),
            200,
        ).json()["access_token"]
    headers = {"authorization": f"Bearer {token}"}
    with httpx.Client(base_url=state["portal"], headers=headers, timeout=30) as portal:
        path = f"/v1/tenants/{tenant}"
        step(f"linking {contoso['display_name']} as {admin['display_name']}")
        expect(portal.post("/v1/tenants", json={"tenant_id": tenant}), 200, 202, 409)

        def link() -> dict[str, Any] | None:
            body: dict[str, Any] = expect(portal.get(path), 200).json()
            if body["status"] in ("rejected", "unlinked"):
                raise DemoFailed(f"the link ended {body['status']}: {body.get('detail')}")
            return body if body["status"] == "linked" else None

        wait_for("the tenant linked", link)
        step("turning on Intune writing")
        expect(portal.post(f"{path}/intune"), 200, 202, 409)
        wait_for(
            "Intune writing enabled",
            lambda: expect(portal.get(path), 200).json()["intune_writing"]["status"] == "enabled",
        )
        step("waiting for the directory")
        wait_for(
            "the directory synced",
            lambda: expect(portal.get(f"{path}/directory"), 200).json()["status"] == "synced",
        )
        groups = [
            group
            for group in expect(portal.get(f"{path}/groups"), 200).json()["items"]
            if group["security_enabled"]
        ][:3]
        apps = expect(portal.get("/v1/catalog/apps"), 200).json()["items"][:2]
        if len(groups) < 3 or len(apps) < 2:
            raise DemoFailed(f"the demo needs 3 groups and 2 catalog apps: {groups} {apps}")
        plans = {
            apps[0]["id"]: [
                {"target": {"kind": "group", "group_id": groups[0]["id"]}, "intent": "required"}
            ],
            apps[1]["id"]: [
                {"target": {"kind": "group", "group_id": groups[1]["id"]}, "intent": "available"},
                {
                    "target": {"kind": "exclusion_group", "group_id": groups[2]["id"]},
                    "intent": "available",
                },
            ],
        }
        changes = {}
        for app, assignments in plans.items():
            step(f"deploying {app}: {describe(assignments, groups)}")
            deployment = f"{path}/deployments/{app}"
            current = portal.get(deployment)
            precondition = (
                {"if-match": current.headers["etag"]}
                if current.status_code == 200
                else {"if-none-match": "*"}
            )
            answer = expect(
                portal.put(deployment, json={"assignments": assignments}, headers=precondition),
                200,  # already so (a demo run before this one): no change
                202,
            )
            if answer.status_code == 202:
                changes[app] = answer.headers["location"]
            elif not answer.json()["in_sync"]:
                raise DemoFailed(f"{app} is not in sync: {answer.text[:500]}")
            else:
                step(f"{app}: already applied")
        for app, location in changes.items():
            change = wait_for(f"{app} applied", functools.partial(ended, portal, location))
            step(f"{app}: {change['status']}")
            if change["status"] != "applied":
                raise DemoFailed(f"{app} ended {change['status']}: {json.dumps(change)[:800]}")
        print("\ndeployments:")
        for item in expect(portal.get(f"{path}/deployments"), 200).json()["items"]:
            held = len(item["applied_assignments"] or [])
            print(
                f"  {item['app']:<28} {item['status']:<10} revision {item['revision']}, "
                f"in sync: {item['in_sync']}, assignments in Intune: {held}"
            )
        print("\naudit timeline:")
        for event in expect(portal.get(f"{path}/audit"), 200).json()["items"]:
            who = event["actor_name"] or event["actor"]
            print(f"  {event['time']}  {event['event_type']:<36} {who:<24} {event['app'] or ''}")


def ended(portal: httpx.Client, location: str) -> dict[str, Any] | None:
    """The change at ``location`` once it has ended."""
    body: dict[str, Any] = expect(portal.get(location), 200).json()
    return body if body["status"] in ("applied", "failed", "rejected", "superseded") else None


def describe(assignments: list[dict[str, Any]], groups: list[dict[str, Any]]) -> str:
    names = {group["id"]: group["display_name"] for group in groups}
    return ", ".join(
        f"{a['intent']} {a['target']['kind']} {names.get(a['target']['group_id'], '?')}"
        for a in assignments
    )


def main() -> None:
    state_file = run_state_file()
    if not state_file.exists():
        print(f"make demo: nothing is running ({state_file} is missing): `make run` first")
        raise SystemExit(2)
    state = json.loads(Path(state_file).read_text())
    if not state.get("emulator"):
        print("make demo: it runs against the emulator, and `make run` is on real Microsoft")
        raise SystemExit(2)
    try:
        demo(state)
    except (DemoFailed, httpx.HTTPError) as exc:
        print(f"make demo failed: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc
    print("\nmake demo: every step passed")


if __name__ == "__main__":
    main()
