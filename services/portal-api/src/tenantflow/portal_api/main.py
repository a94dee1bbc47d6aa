"""Entrypoint: `python -m tenantflow.portal_api` or `tenantflow-portal-api`."""

from __future__ import annotations

from tenantflow.bus.serve import serve
from tenantflow.portal_api.api import create_app
from tenantflow.portal_api.bootstrap import SERVICE, bootstrap
from tenantflow.portal_api.settings import Settings


def main() -> None:
    settings = Settings()
    serve(create_app(bootstrap(settings)), settings, SERVICE)


if __name__ == "__main__":
    main()
