"""The Microsoft Graph service principal's application permissions (appRoles) the emulator knows,
with their real role ids (shared/reference/graph-wire-formats.md §4)."""

from __future__ import annotations

from uuid import UUID

GRAPH_APP_ID = UUID("00000003-0000-0000-c000-000000000000")
GRAPH_RESOURCE = "https://graph.microsoft.com"
GLOBAL_ADMINISTRATOR_TEMPLATE = UUID("62e90394-69f5-4237-9190-012177145e10")
DEFAULT_ACCESS_ROLE = UUID(int=0)

APP_ROLES: dict[str, UUID] = {
    "DeviceManagementApps.ReadWrite.All": UUID("78145de6-330d-4800-a6ce-494ff2d33d07"),
    "DeviceManagementApps.Read.All": UUID("7a6ee1e7-141e-4cec-ae74-d9db155731ff"),
    "DeviceManagementManagedDevices.Read.All": UUID("2f51be20-0bb4-4fed-bf7b-db946066c75e"),
    "DeviceManagementConfiguration.Read.All": UUID("dc377aa6-52d8-4e23-b271-2a7ae04cedf3"),
    "Organization.Read.All": UUID("498476ce-e0fe-48b0-b801-37ba7e2685c6"),
    "Directory.Read.All": UUID("7ab1d382-f21e-4acd-a863-ba3e13f7da61"),
    "Group.Read.All": UUID("5b567255-7703-4780-807c-7be8301ae99b"),
    "User.Read.All": UUID("df021288-bdef-4463-88db-98f22de89214"),
    "Device.Read.All": UUID("7438b122-aefc-4978-80ed-43db9fcc7715"),
    "Application.Read.All": UUID("9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30"),
    "RoleManagement.Read.Directory": UUID("483bed4a-2ad3-4361-a73b-c83ccdbdc53c"),
    "RoleManagement.Read.All": UUID("c7fbd983-d9aa-4fa7-84b8-17382c103bc4"),
    "RoleEligibilitySchedule.Read.Directory": UUID("ff278e11-4a33-4d0c-83d2-d01dc58929a5"),
    "GroupMember.Read.All": UUID("98830695-27a2-44f7-8c18-0c3ebc9698f6"),
}

DIRECTORY_ROLE_TEMPLATES: dict[str, UUID] = {
    "Global Administrator": GLOBAL_ADMINISTRATOR_TEMPLATE,
    "Intune Administrator": UUID("3a2c62db-5318-420d-8d74-23affee5d9d5"),
    "Global Reader": UUID("f2ef992c-3afb-46b9-b7cf-a126ee74c451"),
}
