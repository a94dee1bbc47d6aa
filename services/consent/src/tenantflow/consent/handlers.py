"""Use cases of consent, as event handlers: tenant-link and Intune-activation checks.

None is registered yet; they arrive with their use cases. Until then no consumer group is
subscribed, on purpose: a group without handlers would commit offsets past events it is meant to
handle once its handlers exist.
"""

from __future__ import annotations

from tenantflow.bus.runtime import ServiceRuntime


def register(runtime: ServiceRuntime) -> None:
    """Subscribe this service's consumer groups, with their handlers, on the runtime's broker."""
