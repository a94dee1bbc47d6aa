"""tenantflow-audit: replay the event log (see tenantflow.audit.cli)."""
