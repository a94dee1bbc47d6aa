"""Directory changes made through the control plane; delta queries then report them.

A request's mutations are checked as a whole first, then applied: nothing is half-applied."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from tenantflow.emulator.graph_permissions import DIRECTORY_ROLE_TEMPLATES
from tenantflow.emulator.state import SeedDevice, SeedGroup, SeedUser, Tenant


class _Op(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AddMember(_Op):
    op: Literal["add_member"]
    group_id: UUID
    member_id: UUID


class RemoveMember(_Op):
    op: Literal["remove_member"]
    group_id: UUID
    member_id: UUID


class AddGroup(_Op):
    op: Literal["add_group"]
    group: SeedGroup


class RenameGroup(_Op):
    op: Literal["rename_group"]
    group_id: UUID
    display_name: str


class DeleteGroup(_Op):
    op: Literal["delete_group"]
    group_id: UUID
    permanent: bool = Field(default=False, description="false: soft delete (restorable).")


class AddUser(_Op):
    op: Literal["add_user"]
    user: SeedUser


class DeleteUser(_Op):
    op: Literal["delete_user"]
    user_id: UUID
    permanent: bool = False


class RestoreUser(_Op):
    """A soft-deleted user comes back from the recycle bin, with the memberships it kept."""

    op: Literal["restore_user"]
    user_id: UUID


class ChangeDevice(_Op):
    op: Literal["change_device"]
    device_id: UUID
    display_name: str | None = None
    operating_system: str | None = None
    is_managed: bool | None = None


class AddDevice(_Op):
    op: Literal["add_device"]
    device: SeedDevice


class DeleteDevice(_Op):
    op: Literal["delete_device"]
    device_id: UUID


class GrantRole(_Op):
    op: Literal["grant_role"]
    user_id: UUID
    role: str


class RemoveRole(_Op):
    op: Literal["remove_role"]
    user_id: UUID
    role: str


class MakeEligible(_Op):
    """Privileged Identity Management: the user may activate ``role``, but does not hold it."""

    op: Literal["make_eligible"]
    user_id: UUID
    role: str


class RemoveEligibility(_Op):
    op: Literal["remove_eligibility"]
    user_id: UUID
    role: str


class ActivateRole(_Op):
    """The user activates an eligible role: it becomes an active assignment too."""

    op: Literal["activate_role"]
    user_id: UUID
    role: str


class SetAppEnabled(_Op):
    """A tenant admin enables or disables an enterprise app (its accountEnabled)."""

    op: Literal["set_app_enabled"]
    app_id: UUID
    account_enabled: bool


Mutation = Annotated[
    AddMember
    | RemoveMember
    | AddGroup
    | RenameGroup
    | DeleteGroup
    | AddUser
    | DeleteUser
    | RestoreUser
    | AddDevice
    | ChangeDevice
    | DeleteDevice
    | GrantRole
    | RemoveRole
    | MakeEligible
    | RemoveEligibility
    | ActivateRole
    | SetAppEnabled,
    Field(discriminator="op"),
]
MUTATIONS: TypeAdapter[list[Mutation]] = TypeAdapter(list[Mutation])


def _check(tenant: Tenant, mutations: list[Mutation]) -> None:
    users, groups, devices = set(tenant.users), set(tenant.groups), set(tenant.devices)
    binned = set(tenant.deleted_users)
    eligible = {user.id: set(user.eligible_roles) for user in tenant.users.values()}
    for index, m in enumerate(mutations):
        where = f"mutation {index} ({m.op})"
        if isinstance(m, AddUser | AddGroup | AddDevice):
            new = (
                m.user.id
                if isinstance(m, AddUser)
                else (m.group.id if isinstance(m, AddGroup) else m.device.id)
            )
            if new in users | groups | devices:
                raise ValueError(f"{where}: object {new} already exists")
            (
                users if isinstance(m, AddUser) else groups if isinstance(m, AddGroup) else devices
            ).add(new)
        elif isinstance(m, AddMember | RemoveMember):
            if m.group_id not in groups:
                raise ValueError(f"{where}: no group {m.group_id}")
            if m.member_id not in users | groups | devices:
                raise ValueError(f"{where}: no user, group or device {m.member_id}")
        elif isinstance(m, RenameGroup | DeleteGroup):
            if m.group_id not in groups:
                raise ValueError(f"{where}: no group {m.group_id}")
            if isinstance(m, DeleteGroup):
                groups.discard(m.group_id)
        elif isinstance(m, RestoreUser):
            if m.user_id not in binned:
                raise ValueError(f"{where}: no soft-deleted user {m.user_id}")
            binned.discard(m.user_id)
            users.add(m.user_id)
        elif isinstance(m, DeleteUser) and m.user_id in binned:
            if not m.permanent:
                raise ValueError(f"{where}: user {m.user_id} is already soft-deleted")
            binned.discard(m.user_id)
        elif isinstance(
            m, DeleteUser | GrantRole | RemoveRole | MakeEligible | RemoveEligibility | ActivateRole
        ):
            if m.user_id not in users:
                raise ValueError(f"{where}: no user {m.user_id}")
            if isinstance(m, DeleteUser):
                users.discard(m.user_id)
                if not m.permanent:
                    binned.add(m.user_id)
            elif m.role not in DIRECTORY_ROLE_TEMPLATES:
                raise ValueError(f"{where}: unknown role {m.role!r}")
            elif isinstance(m, ActivateRole) and m.role not in eligible.get(m.user_id, set()):
                raise ValueError(f"{where}: {m.role!r} is not eligible for {m.user_id}")
            elif isinstance(m, MakeEligible):
                eligible.setdefault(m.user_id, set()).add(m.role)
            elif isinstance(m, RemoveEligibility):
                eligible.setdefault(m.user_id, set()).discard(m.role)
        elif isinstance(m, SetAppEnabled):
            if m.app_id not in tenant.service_principals:
                raise ValueError(f"{where}: app {m.app_id} has no service principal here")
        elif isinstance(m, DeleteDevice | ChangeDevice):
            if m.device_id not in devices:
                raise ValueError(f"{where}: no device {m.device_id}")
            if isinstance(m, DeleteDevice):
                devices.discard(m.device_id)


def apply(tenant: Tenant, mutations: list[Mutation]) -> None:
    _check(tenant, mutations)
    for m in mutations:
        if isinstance(m, AddUser):
            tenant.users[m.user.id] = m.user
            tenant.record("users", m.user.id)
        elif isinstance(m, AddGroup):
            tenant.groups[m.group.id] = m.group
            tenant.record("groups", m.group.id)
        elif isinstance(m, AddDevice):
            tenant.devices[m.device.id] = m.device
            tenant.record("devices", m.device.id)
        elif isinstance(m, AddMember):
            group = tenant.groups[m.group_id]
            if m.member_id not in group.members:
                group.members.append(m.member_id)
                kind = tenant.type_of(m.member_id)
                tenant.record("groups", m.group_id, member=m.member_id, member_type=kind)
        elif isinstance(m, RemoveMember):
            group = tenant.groups[m.group_id]
            if m.member_id in group.members:
                group.members.remove(m.member_id)
                _record_removal(tenant, group.id, m.member_id, tenant.type_of(m.member_id))
        elif isinstance(m, RenameGroup):
            tenant.groups[m.group_id].display_name = m.display_name
            tenant.record("groups", m.group_id)
        elif isinstance(m, DeleteGroup):
            _drop_memberships(tenant, m.group_id)
            del tenant.groups[m.group_id]
            tenant.record("groups", m.group_id, removed="deleted" if m.permanent else "changed")
        elif isinstance(m, DeleteUser):
            # only a permanent deletion removes memberships (delta-query-groups.md @b7c6490);
            # a soft-deleted user keeps them, in the recycle bin, until restored or purged
            if m.permanent:
                _drop_memberships(tenant, m.user_id)
            user = tenant.users.pop(m.user_id, None) or tenant.deleted_users.pop(m.user_id)
            if not m.permanent:
                tenant.deleted_users[m.user_id] = user
            tenant.record("users", m.user_id, removed="deleted" if m.permanent else "changed")
        elif isinstance(m, RestoreUser):
            tenant.users[m.user_id] = tenant.deleted_users.pop(m.user_id)
            tenant.record("users", m.user_id)
        elif isinstance(m, ChangeDevice):
            device = tenant.devices[m.device_id]
            for name in ("display_name", "operating_system", "is_managed"):
                if getattr(m, name) is not None:
                    setattr(device, name, getattr(m, name))
            tenant.record("devices", m.device_id)
        elif isinstance(m, DeleteDevice):
            _drop_memberships(tenant, m.device_id)
            del tenant.devices[m.device_id]
            tenant.record("devices", m.device_id, removed="deleted")
        elif isinstance(m, GrantRole | RemoveRole | ActivateRole):
            user = tenant.users[m.user_id]
            roles = [r for r in user.directory_roles if r != m.role]
            user.directory_roles = roles if isinstance(m, RemoveRole) else [*roles, m.role]
        elif isinstance(m, MakeEligible | RemoveEligibility):
            user = tenant.users[m.user_id]
            roles = [r for r in user.eligible_roles if r != m.role]
            user.eligible_roles = [*roles, m.role] if isinstance(m, MakeEligible) else roles
        elif isinstance(m, SetAppEnabled):
            tenant.service_principals[m.app_id].account_enabled = m.account_enabled


def _drop_memberships(tenant: Tenant, object_id: UUID) -> None:
    """The object (still there, or in the recycle bin) leaves every group it is in."""
    kind = tenant.type_of(object_id)
    for group in tenant.groups.values():
        if object_id in group.members:
            group.members.remove(object_id)
            _record_removal(tenant, group.id, object_id, kind)


def _record_removal(tenant: Tenant, group_id: UUID, member: UUID, kind: str) -> None:
    tenant.record("groups", group_id, member=member, member_removed=True, member_type=kind)
