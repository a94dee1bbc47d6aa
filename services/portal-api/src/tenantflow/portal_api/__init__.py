"""tenantflow portal-api: the HTTP API portal users reach through the API gateway."""
