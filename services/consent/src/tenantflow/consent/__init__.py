"""tenantflow consent: verifies admin consent and the linking user's rights in Graph."""
