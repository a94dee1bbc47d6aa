"""Delta queries report exactly the changes made through the control plane."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

import httpx
import pytest

from tenantflow.emulator.testing import RunningEmulator

pytestmark = pytest.mark.integration


class Directory:
    def __init__(self, emulator: RunningEmulator) -> None:
        self.emulator = emulator
        self.tenant = str(uuid4())
        self.users = [str(uuid4()) for _ in range(45)]
        self.big, self.small, self.untouched = str(uuid4()), str(uuid4()), str(uuid4())
        emulator.seed(
            {
                "id": self.tenant,
                "display_name": "Litware",
                "verified_domains": ["litware.example"],
                "users": [
                    {
                        "id": u,
                        "display_name": f"User {n}",
                        "user_principal_name": f"user{n}@litware.example",
                    }
                    for n, u in enumerate(self.users)
                ],
                "groups": [
                    {"id": self.big, "display_name": "Everyone", "members": self.users},
                    {"id": self.small, "display_name": "Pilots", "members": self.users[:2]},
                    {"id": self.untouched, "display_name": "Quiet", "members": [self.users[5]]},
                ],
                "enterprise_apps": [
                    {
                        "app_id": emulator.apps["directory-connector"]["client_id"],
                        "permissions": ["Directory.Read.All"],
                    }
                ],
            }
        )

    def graph(self) -> httpx.Client:
        return self.emulator.graph("directory-connector", self.tenant)

    def mutate(self, *mutations: dict[str, Any]) -> httpx.Response:
        return self.emulator.change_directory(self.tenant, *mutations)


def relative(link: str) -> str:
    """A link the emulator gave, which names the emulator itself (as Graph's name Graph)."""
    parts = urlsplit(link)
    assert parts.hostname in ("localhost", "127.0.0.1"), link
    return f"{parts.path}?{parts.query}"


def sync(graph: httpx.Client, url: str) -> tuple[list[dict[str, Any]], str]:
    """Follow nextLinks to the deltaLink; return the entries and the deltaLink."""
    entries: list[dict[str, Any]] = []
    while True:
        body = graph.get(url).json()
        entries += body["value"]
        if "@odata.deltaLink" in body:
            return entries, relative(body["@odata.deltaLink"])
        url = relative(body["@odata.nextLink"])


def merged_members(entries: list[dict[str, Any]]) -> dict[str, set[str]]:
    members: dict[str, set[str]] = {}
    for entry in entries:
        members.setdefault(entry["id"], set()).update(
            m["id"] for m in entry.get("members@delta", []) if "@removed" not in m
        )
    return members


@pytest.fixture
def directory(emulator: RunningEmulator) -> Directory:
    return Directory(emulator)


def test_full_sync_splits_a_large_group_across_entries(directory: Directory) -> None:
    with directory.graph() as graph:
        entries, _ = sync(graph, "/v1.0/groups/delta")
    assert sum(1 for e in entries if e["id"] == directory.big) == 3  # 45 members, 20 per entry
    assert merged_members(entries)[directory.big] == set(directory.users)
    assert all(
        e["members@delta"][0]["@odata.type"] == "#microsoft.graph.user"
        for e in entries
        if e["members@delta"]
    )


def test_incremental_sync_reports_exactly_the_changes(directory: Directory) -> None:
    newcomer, new_group = str(uuid4()), str(uuid4())
    with directory.graph() as graph:
        _, delta_link = sync(graph, "/v1.0/groups/delta")
        assert (
            directory.mutate(
                {
                    "op": "add_user",
                    "user": {
                        "id": newcomer,
                        "display_name": "New",
                        "user_principal_name": "new@litware.example",
                    },
                },
                {"op": "add_member", "group_id": directory.small, "member_id": newcomer},
                {
                    "op": "remove_member",
                    "group_id": directory.small,
                    "member_id": directory.users[0],
                },
                {"op": "rename_group", "group_id": directory.big, "display_name": "All staff"},
                {"op": "delete_group", "group_id": directory.untouched},
                {"op": "add_group", "group": {"id": new_group, "display_name": "Fresh"}},
            ).status_code
            == 200
        )
        changes, next_delta = sync(graph, delta_link)
        nothing, _ = sync(graph, next_delta)
    by_id = {c["id"]: c for c in changes}
    assert set(by_id) == {directory.small, directory.big, directory.untouched, new_group}
    assert by_id[directory.big]["displayName"] == "All staff"
    assert by_id[directory.big]["members@delta"] == []  # renamed, membership unchanged
    assert {(m["id"], "@removed" in m) for m in by_id[directory.small]["members@delta"]} == {
        (newcomer, False),
        (directory.users[0], True),
    }
    # typed as the member itself, removed or not (Microsoft's delta-query-groups example)
    assert {m["@odata.type"] for m in by_id[directory.small]["members@delta"]} == {
        "#microsoft.graph.user"
    }
    assert by_id[directory.untouched]["@removed"] == {"reason": "changed"}  # soft-deleted
    assert by_id[new_group]["displayName"] == "Fresh"
    assert nothing == []


def test_users_delta_reports_a_permanent_deletion(directory: Directory) -> None:
    with directory.graph() as graph:
        users, delta_link = sync(graph, "/v1.0/users/delta")
        assert len(users) == 45
        assert (
            directory.mutate(
                {"op": "delete_user", "user_id": directory.users[3], "permanent": True}
            ).status_code
            == 200
        )
        users_changes, _ = sync(graph, delta_link)
        groups_entries, _ = sync(graph, "/v1.0/groups/delta")
    assert users_changes == [{"id": directory.users[3], "@removed": {"reason": "deleted"}}]
    assert directory.users[3] not in merged_members(groups_entries)[directory.big]


def test_an_invalidated_token_answers_410_with_a_location_to_restart(directory: Directory) -> None:
    with directory.graph() as graph:
        _, delta_link = sync(graph, "/v1.0/devices/delta")
        with directory.emulator.client() as control:
            control.post(f"/_emulator/tenants/{directory.tenant}/delta/invalidate")
        gone = graph.get(delta_link)
        restart = graph.get(relative(gone.headers["Location"]))
    assert gone.status_code == 410
    assert gone.json()["error"]["code"] == "resyncRequired"
    assert gone.headers["Location"].endswith("/v1.0/devices/delta?$deltatoken=")
    assert restart.status_code == 200
    assert "@odata.deltaLink" in restart.json()


def test_invalid_mutations_change_nothing(directory: Directory) -> None:
    with directory.graph() as graph:
        _, delta_link = sync(graph, "/v1.0/groups/delta")
        refused = directory.mutate(
            {"op": "rename_group", "group_id": directory.small, "display_name": "Renamed"},
            {"op": "add_member", "group_id": str(uuid4()), "member_id": directory.users[0]},
        )
        changes, _ = sync(graph, delta_link)
    assert refused.status_code == 422
    assert changes == []


def test_a_deleted_member_leaves_its_groups_typed_as_what_it_was(directory: Directory) -> None:
    with directory.graph() as graph:
        _, delta_link = sync(graph, "/v1.0/groups/delta")
        directory.mutate(
            {"op": "delete_user", "user_id": directory.users[1], "permanent": True}
        ).raise_for_status()
        changes, _ = sync(graph, delta_link)
    removed = [
        member
        for entry in changes
        for member in entry.get("members@delta", [])
        if member["id"] == directory.users[1]
    ]
    assert len(removed) == 2  # Everyone and Pilots
    assert all(m["@odata.type"] == "#microsoft.graph.user" for m in removed)
    assert all(m["@removed"] == {"reason": "deleted"} for m in removed)


def test_a_page_read_again_is_the_same_page(directory: Directory) -> None:
    """A client that lost a page (a crash, a cancelled prefetch) reads its link again."""
    directory.mutate(
        *(
            {
                "op": "add_user",
                "user": {
                    "id": str(uuid4()),
                    "display_name": f"Extra {n}",
                    "user_principal_name": f"extra{n}@litware.example",
                },
            }
            for n in range(200)
        )
    ).raise_for_status()
    with directory.graph() as graph:
        first = graph.get("/v1.0/users/delta").json()
        second_link = relative(first["@odata.nextLink"])
        second = graph.get(second_link).json()
        third = graph.get(relative(second["@odata.nextLink"])).json()
        again = graph.get(second_link).json()
    assert again["value"] == second["value"]
    assert again["@odata.nextLink"] == second["@odata.nextLink"]
    ids = [u["id"] for page in (first, second, third) for u in page["value"]]
    assert len(ids) == len(set(ids)) == 245
    assert "@odata.deltaLink" in third
