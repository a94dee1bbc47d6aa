"""Entrypoint: `python -m tenantflow.intune_writer` or `tenantflow-intune-writer`."""

from __future__ import annotations

from tenantflow.bus.health import worker_app
from tenantflow.bus.serve import serve
from tenantflow.intune_writer.bootstrap import SERVICE, bootstrap
from tenantflow.intune_writer.settings import Settings


def main() -> None:
    settings = Settings()
    runtime, scheduler = bootstrap(settings)
    serve(worker_app(runtime, {"/scheduler": scheduler.report}), settings, SERVICE)


if __name__ == "__main__":
    main()
