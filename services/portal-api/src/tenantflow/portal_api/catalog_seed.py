"""The app catalog shipped with tenantflow (catalog_seed.json), added at start-up.

A seeded app is added when missing and never overwrites what a catalog administrator changed;
several replicas may seed at once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy.dialects.postgresql import insert

from tenantflow.bus.db import SessionFactory, transaction
from tenantflow.portal_api.models import CatalogAppPut, CatalogAppRow


def load_seed(path: Path) -> list[dict[str, Any]]:
    """The shipped catalog's apps, each checked as an administrator's PUT would be."""
    apps: list[dict[str, Any]] = json.loads(path.read_text())["apps"]
    for app in apps:
        if not isinstance(app.get("id"), str):
            raise ValueError(f"{path}: every app needs an id")
        CatalogAppPut.model_validate({k: v for k, v in app.items() if k != "id"})
    return apps


async def seed_catalog(sessions: SessionFactory, path: Path) -> None:
    """Add the shipped apps that are missing."""
    rows = [
        {**{k: v for k, v in app.items() if k != "id"}, "catalog_id": app["id"], "source": "seed"}
        for app in load_seed(path)
    ]
    async with transaction(sessions) as session:
        await session.exec(insert(CatalogAppRow).values(rows).on_conflict_do_nothing())
