"""Everything the SaaS tells Flask-AccessTokens: its resource model, its
scopes and its callbacks. The docs page "Your own resources" shows this file
piece by piece."""

from __future__ import annotations

from flask_accesstokens import AccessTokens
from flask_accesstokens import Level
from flask_accesstokens import Resource
from flask_accesstokens import ResourceModel
from flask_accesstokens import ScopeCatalog

from .auth import current_member
from .models import db
from .models import Item
from .models import Organization
from .models import Project

# -- the resource model --------------------------------------------------------

resources = ResourceModel(
    Level("organization", arg="org_id"),  # the top level
    Level("project", arg="project_id"),  # each project lives in one organization
)

# -- the scopes ----------------------------------------------------------------

scopes = ScopeCatalog()  # empty: none of Bitbucket's scopes
scopes.register("items:read", label="Items: Read")
scopes.register("items:write", implies=["items:read"], label="Items: Write")
scopes.register(
    "projects:admin",
    implies=["items:write"],
    token_types=["organization"],  # only organization tokens may hold it
    label="Projects: Admin",
)
scopes.register("templates:read", label="Templates: Read")

tokens = AccessTokens(scopes=scopes, resources=resources)

# -- the callbacks -------------------------------------------------------------


def as_id(name: str) -> int | None:
    """A name from a management URL as an integer id, or None. Names are
    strings to the extension, and a URL may hold any name (``josé``)."""
    return int(name) if name.isascii() and name.isdigit() else None


@tokens.manager_loader
def manager(resource: Resource) -> str | None:
    """Who may manage tokens on ``resource`` in this request: a signed-in
    admin of its organization, recorded as ``created_by``; None refuses."""
    member = current_member()
    if member is None or not member.admin:
        return None
    if member.org_id != as_id(resource.values["organization"]):
        return None
    return member.name


@tokens.resource_exists
def exists(resource: Resource) -> bool:
    """No token for an organization or project that does not exist: it
    would work nowhere."""
    org_id = as_id(resource.values["organization"])
    if org_id is None:
        return False
    if resource.type == "organization":
        return db.session.get(Organization, org_id) is not None
    project_id = as_id(resource.values["project"])
    if project_id is None:
        return False
    return Project.query.filter_by(org_id=org_id, id=project_id).first() is not None


# -- the resolver of a flat URL ------------------------------------------------


def item_resource(item_id: int) -> dict[str, int] | None:
    """The resource of the item ``/items/<item_id>`` acts on: its URL names
    neither organization nor project, so the binding asks here. None (no
    such item) is refused like another project's item."""
    item = db.session.get(Item, item_id)
    if item is None:
        return None
    return {"organization": item.project.org_id, "project": item.project_id}
