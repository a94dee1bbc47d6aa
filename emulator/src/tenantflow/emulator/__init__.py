"""Entra ID and Microsoft Graph emulator: one HTTPS server that tenantflow's services talk to
unchanged, with only base URLs and the trusted CA differing from production."""
