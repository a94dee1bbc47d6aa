"""Seed documents: the demo's two tenants, and synthetic tenants of any size for benchmarks.

Everything is derived from a fixed random seed, so ids are stable from run to run.
"""

from __future__ import annotations

import random
from typing import Any
from uuid import UUID, uuid5

from tenantflow.emulator.settings import EmulatorSettings

NAMESPACE = UUID("2f0c6a34-5b1e-4c1d-9a6b-7e8f9a0b1c2d")
CONTOSO = UUID("6f1c9e52-8a1d-4c1e-9a57-2d8c3b1e7f10")
FABRIKAM = UUID("3b7d1e9a-2c4f-4a6b-8d0e-1f2a3b4c5d6e")

FIRST = [
    "Adele",
    "Alex",
    "Allan",
    "Diego",
    "Grady",
    "Henrietta",
    "Isaiah",
    "Johanna",
    "Joni",
    "Lee",
    "Lidia",
    "Lynne",
    "Megan",
    "Miriam",
    "Nestor",
    "Patti",
    "Pradeep",
    "Irvin",
]
LAST = [
    "Vance",
    "Wilber",
    "Deyoung",
    "Siciliani",
    "Archie",
    "Mueller",
    "Langer",
    "Lauridsen",
    "Sherman",
    "Gu",
    "Holloway",
    "Robbins",
    "Bowen",
    "Graham",
    "Wilke",
    "Fernandez",
    "Gupta",
    "Sayers",
]
DEPARTMENTS = [
    "Sales",
    "Marketing",
    "Finance",
    "HR",
    "Engineering",
    "Operations",
    "Legal",
    "Support",
    "Research",
    "Retail",
    "Manufacturing",
    "Executive",
]
INTUNE_APPS = [
    (
        "#microsoft.graph.winGetApp",
        "Mozilla Firefox",
        "Mozilla",
        {"packageIdentifier": "9NZVDKPMR9RD"},
    ),
    ("#microsoft.graph.winGetApp", "7-Zip", "Igor Pavlov", {"packageIdentifier": "9NBLGGH4Q1V4"}),
    (
        "#microsoft.graph.webApp",
        "Contoso Intranet",
        "Contoso",
        {"appUrl": "https://intranet.contoso.example", "useManagedBrowser": False},
    ),
    (
        "#microsoft.graph.win32LobApp",
        "Line-of-business client",
        "Contoso",
        {"fileName": "lob-client.intunewin", "setupFilePath": "setup.exe"},
    ),
]


def _id(*parts: object) -> str:
    return str(uuid5(NAMESPACE, "/".join(str(p) for p in parts)))


def synthetic_tenant(
    tenant_id: UUID,
    display_name: str,
    domain: str,
    users: int,
    groups: int,
    devices: int,
    seed: int = 7,
    consented: dict[str, list[str]] | None = None,
    settings: EmulatorSettings | None = None,
) -> dict[str, Any]:
    """A tenant with ``users`` users (the first a Global Administrator, the second only eligible
    for it), ``groups`` groups (department groups nesting smaller team groups) and ``devices``
    devices."""
    rng = random.Random(seed)  # noqa: S311 - seed data, not security
    settings = settings or EmulatorSettings()
    apps = {app.name: app for app in settings.apps().values()}
    user_ids = [_id(tenant_id, "user", n) for n in range(users)]
    device_ids = [_id(tenant_id, "device", n) for n in range(devices)]
    user_docs = [
        {
            "id": user_ids[n],
            "display_name": f"{FIRST[n % len(FIRST)]} {LAST[(n // len(FIRST)) % len(LAST)]}"
            + (f" {n}" if n >= len(FIRST) * len(LAST) else ""),
            "user_principal_name": f"user{n:05}@{domain}",
            "directory_roles": ["Global Administrator"] if n == 0 else [],
            # Privileged Identity Management: eligible, not active until activated
            "eligible_roles": ["Global Administrator"] if n == 1 else [],
        }
        for n in range(users)
    ]
    group_docs: list[dict[str, Any]] = []
    departments = min(len(DEPARTMENTS), max(1, groups // 4))
    for n in range(groups):
        group_id = _id(tenant_id, "group", n)
        if n < departments:
            name = f"{DEPARTMENTS[n]} - all"
            members: list[str] = []
        else:
            name = f"{DEPARTMENTS[n % departments]} team {n}"
            size = min(len(user_ids), rng.randint(3, 40))
            members = rng.sample(user_ids, size) if user_ids else []
            members += rng.sample(device_ids, min(len(device_ids), rng.randint(0, 5)))
            group_docs[n % departments]["members"].append(group_id)  # nesting
        group_docs.append({"id": group_id, "display_name": name, "members": members})
    device_docs = [
        {"id": device_ids[n], "display_name": f"{domain.split('.')[0].upper()}-PC-{n:05}"}
        for n in range(devices)
    ]
    enterprise_apps = [
        {
            "app_id": str(apps[name].client_id),
            "permissions": permissions,
            "assigned_principals": [group_docs[0]["id"]]
            if name == "directory-connector" and group_docs
            else [],
        }
        for name, permissions in (consented or {}).items()
    ]
    filter_id = _id(tenant_id, "filter", 0)
    intune_apps = [
        {
            "id": _id(tenant_id, "app", n),
            "@odata.type": kind,
            "display_name": name,
            "publisher": publisher,
            "properties": properties,
            "assignments": (
                [
                    {
                        "intent": "required",
                        "target": {
                            "@odata.type": "#microsoft.graph.groupAssignmentTarget",
                            "groupId": group_docs[n % len(group_docs)]["id"],
                            "deviceAndAppManagementAssignmentFilterId": filter_id
                            if n == 0
                            else None,
                            "deviceAndAppManagementAssignmentFilterType": "include"
                            if n == 0
                            else "none",
                        },
                    }
                ]
                if group_docs and n < 2
                else []
            ),
        }
        for n, (kind, name, publisher, properties) in enumerate(INTUNE_APPS)
    ]
    return {
        "id": str(tenant_id),
        "display_name": display_name,
        "verified_domains": [domain, f"{domain.split('.')[0]}.onmicrosoft.com"],
        "users": user_docs,
        "groups": group_docs,
        "devices": device_docs,
        "enterprise_apps": enterprise_apps,
        "intune_apps": intune_apps,
        "assignment_filters": [{"id": filter_id, "display_name": "Windows 11 devices"}],
    }


def demo_tenants(settings: EmulatorSettings | None = None) -> list[dict[str, Any]]:
    """Contoso consented both apps with every permission tenantflow needs (and the connector
    may read role eligibility, so its eligible admin is told to activate); Fabrikam none."""
    contoso = synthetic_tenant(
        CONTOSO,
        "Contoso",
        "contoso.example",
        users=300,
        groups=40,
        devices=350,
        consented={
            "directory-connector": ["Directory.Read.All", "RoleEligibilitySchedule.Read.Directory"],
            "intune-writer": [
                "DeviceManagementApps.ReadWrite.All",
                "DeviceManagementManagedDevices.Read.All",
                "DeviceManagementConfiguration.Read.All",
                "Organization.Read.All",
            ],
        },
        settings=settings,
    )
    fabrikam = synthetic_tenant(
        FABRIKAM,
        "Fabrikam",
        "fabrikam.example",
        users=200,
        groups=24,
        devices=220,
        seed=11,
        settings=settings,
    )
    return [contoso, fabrikam]
