"""Shared bus plumbing for tenantflow services: imported, never run."""
