"""Microsoft Graph access shared by the services that call it (imported, never run)."""
