"""Entrypoint: `python -m tenantflow.consent` or `tenantflow-consent`."""

from __future__ import annotations

from tenantflow.bus.health import worker_app
from tenantflow.bus.serve import serve
from tenantflow.consent.bootstrap import SERVICE, bootstrap
from tenantflow.consent.settings import Settings


def main() -> None:
    settings = Settings()
    serve(worker_app(bootstrap(settings)), settings, SERVICE)


if __name__ == "__main__":
    main()
