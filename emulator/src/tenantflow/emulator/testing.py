"""Starting the emulator as its own process, for tests and benchmarks of any component."""

from __future__ import annotations

import ssl
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx


@dataclass(frozen=True)
class RunningEmulator:
    url: str
    ca: str
    apps: dict[str, dict[str, Any]]
    """The app registrations it knows, by name: client id, secret, certificate paths."""

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=self.ssl_context())

    def seed(self, document: dict[str, Any]) -> None:
        """Create (or replace) a tenant from a seed document through the control plane."""
        with self.client() as client:
            # a synthetic tenant of 100,000 objects takes seconds to validate
            response = client.post("/_emulator/tenants", json=document, timeout=300)
        if response.status_code != 201:
            raise AssertionError(f"seeding failed: {response.status_code} {response.text}")

    def change_directory(self, tenant: object, *mutations: dict[str, Any]) -> httpx.Response:
        """Apply directory mutations (see ``mutations.py``) to ``tenant``, all or none; the
        control plane's answer (422 when one does not apply)."""
        with self.client() as client:
            return client.post(f"/_emulator/tenants/{tenant}/directory", json=list(mutations))

    def seed_tenant_with_admin(
        self, consents: Mapping[str, list[str]], display_name: str = "Contoso"
    ) -> tuple[UUID, UUID]:
        """A fresh tenant with one Global Administrator, and the named apps (``consents`` keys,
        as in ``apps``) admin-consented with those permissions; its id and the admin's."""
        tenant, admin = uuid4(), uuid4()
        self.seed(
            {
                "id": str(tenant),
                "display_name": display_name,
                "verified_domains": [f"t{tenant.hex[:12]}.example"],
                "users": [
                    {
                        "id": str(admin),
                        "display_name": "Admin",
                        "user_principal_name": f"admin@t{tenant.hex[:12]}.example",
                        "directory_roles": ["Global Administrator"],
                    }
                ],
                "enterprise_apps": [
                    {"app_id": self.apps[app]["client_id"], "permissions": permissions}
                    for app, permissions in consents.items()
                ],
            }
        )
        return tenant, admin

    def app_token(self, app: str, tenant: str) -> str:
        """An app-only Graph token for one of the known apps (client credentials, secret)."""
        registration = self.apps[app]
        with self.client() as client:
            response = client.post(
                f"/{tenant}/oauth2/v2.0/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": registration["client_id"],
                    "client_secret": registration["client_secret"],
                    "scope": "https://graph.microsoft.com/.default",
                },
            )
        body = response.json()
        if "access_token" not in body:
            raise AssertionError(f"no token for {app} in {tenant}: {body}")
        token: str = body["access_token"]
        return token

    def user_token(self, tenant: object, user: object, *roles: str, **options: Any) -> str:
        """A portal access token for a seeded user, as Entra ID would issue it after sign-in;
        ``options`` as in POST /_emulator/tokens (lifetime_seconds, audience, issuer, …)."""
        with self.client() as client:
            response = client.post(
                "/_emulator/tokens",
                json={
                    "tenant_id": str(tenant),
                    "user_id": str(user),
                    "roles": list(roles),
                    **options,
                },
            )
        if response.status_code != 200:
            raise AssertionError(f"no user token: {response.status_code} {response.text}")
        token: str = response.json()["access_token"]
        return token

    def graph(self, app: str, tenant: str) -> httpx.Client:
        """A client that calls Graph as ``app`` in ``tenant``."""
        client = self.client()
        client.headers["authorization"] = f"Bearer {self.app_token(app, tenant)}"
        return client


def start_emulator(
    state_dir: Path,
    *arguments: str,
    prefix: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> tuple[subprocess.Popen[str], RunningEmulator]:
    """Start an emulator process and wait until it listens (it prints its URL and CA then).
    ``arguments`` go to its command line (default port: a free one); ``prefix`` runs it under
    another command, such as taskset. The caller stops the process."""
    if "--port" not in arguments:
        arguments = ("--port", "0", *arguments)
    process = subprocess.Popen(
        [
            *prefix,
            sys.executable,
            "-m",
            "tenantflow.emulator",
            "--state-dir",
            str(state_dir),
            *arguments,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=None if env is None else dict(env),
    )
    assert process.stdout is not None
    printed: dict[str, str] = {}
    while len(printed) < 2:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"the emulator exited with {process.wait()}")
        name, _, value = line.strip().partition("=")
        printed[name] = value
    url, ca = printed["TENANTFLOW_EMULATOR_URL"], printed["TENANTFLOW_EMULATOR_CA"]
    with httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=ca)) as client:
        apps = {app["name"]: app for app in client.get("/_emulator/apps").json()}
    return process, RunningEmulator(url, ca, apps)


@contextmanager
def running_emulator(state_dir: Path, timeout: float = 60) -> Iterator[RunningEmulator]:
    """An emulator process on a free port; stopped (SIGTERM) when the block ends."""
    process, emulator = start_emulator(state_dir)
    try:
        yield emulator
    finally:
        process.terminate()
        process.wait(timeout)
