"""Entrypoint: `python -m tenantflow.directory_sync` or `tenantflow-directory-sync`."""

from __future__ import annotations

from tenantflow.bus.health import worker_app
from tenantflow.bus.serve import serve
from tenantflow.directory_sync.bootstrap import SERVICE, bootstrap
from tenantflow.directory_sync.settings import Settings


def main() -> None:
    settings = Settings()
    serve(worker_app(bootstrap(settings)), settings, SERVICE)


if __name__ == "__main__":
    main()
