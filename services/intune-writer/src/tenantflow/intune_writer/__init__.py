"""tenantflow intune-writer: applies deployment changes to Intune through Microsoft Graph."""
