"""tenantflow directory-sync: keeps a cache of each linked tenant's users, groups and devices."""
