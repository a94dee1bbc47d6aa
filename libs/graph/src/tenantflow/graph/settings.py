"""Where Entra ID and Microsoft Graph are, declared once for every service that talks to them.

Each service's ``Settings`` inherits these fields under its own prefix
(``TENANTFLOW_CONSENT_GRAPH_BASE_URL``, ``TENANTFLOW_PORTAL_LOGIN_BASE_URL``, …). In development
they point at the emulator; the emulator's demo secrets are refused with Microsoft's endpoints.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import SecretStr
from pydantic_settings import BaseSettings

MICROSOFT_LOGIN = "https://login.microsoftonline.com"
MICROSOFT_GRAPH = "https://graph.microsoft.com"
DEMO_SECRETS = frozenset(
    {"demo-directory-connector-secret", "demo-intune-writer-secret", "demo-portal-api-secret"}
)
"""The emulator's app secrets (emulator/settings.py): public, so never for Microsoft."""


class EntraEndpoint(BaseSettings):
    login_base_url: str = MICROSOFT_LOGIN
    """Entra ID's host (the emulator's URL in development)."""
    ca_bundle: Path | None = None
    """A CA to trust besides the system's (the emulator's CA in development)."""


class MicrosoftEndpoints(EntraEndpoint):
    graph_base_url: str = MICROSOFT_GRAPH
    """Microsoft Graph's host (the emulator's URL in development)."""

    @property
    def is_microsoft(self) -> bool:
        """Whether these are Microsoft's own endpoints rather than an emulator's."""
        hosts = {urlsplit(self.graph_base_url).hostname, urlsplit(self.login_base_url).hostname}
        return bool(
            hosts & {urlsplit(MICROSOFT_GRAPH).hostname, urlsplit(MICROSOFT_LOGIN).hostname}
        )

    def refuse_demo_secrets(self, **secrets: SecretStr | None) -> None:
        """Fail when one of ``secrets`` (by setting name) is a demo secret of the emulator and
        the endpoints are Microsoft's: a misconfiguration, never a credential."""
        demo = sorted(
            name
            for name, secret in secrets.items()
            if secret is not None and secret.get_secret_value() in DEMO_SECRETS
        )
        if demo and self.is_microsoft:
            raise ValueError(
                f"{', '.join(demo)}: the emulator's demo secret cannot be used with Microsoft's "
                f"endpoints ({self.graph_base_url}); set the app's real secret or, better, its "
                "certificate"
            )
