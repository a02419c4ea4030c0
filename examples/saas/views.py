"""The SaaS's JSON API, protected with access tokens.

Two habits keep it safe. Routes that nest an object look it up *inside*
its parent (``Project.query.filter_by(org_id=org_id, id=project_id)``): the
binding trusts the URL's hierarchy, so a token of organization 7 passes on
``/organizations/7/projects/<any id>``. Routes that do not nest it
(``/items/<item_id>``) name a resolver, ``resource=item_resource``.
"""

from __future__ import annotations

from typing import Any

from flask import abort
from flask import Blueprint
from flask import make_response
from flask import request
from werkzeug.exceptions import NotFound

from flask_accesstokens import current_token
from flask_accesstokens import require_scope

from .access import item_resource
from .access import tokens
from .models import db
from .models import Item
from .models import Project
from .models import Template

bp = Blueprint("saas", __name__)


def title_from_body() -> str:
    body = request.get_json(silent=True)
    title = body.get("title") if isinstance(body, dict) else None
    if not isinstance(title, str) or not title.strip():
        abort(make_response({"error": "Send JSON with a non-empty 'title'."}, 400))
    return title.strip()


@bp.errorhandler(NotFound)
def not_found(error: NotFound) -> tuple[dict[str, str], int]:
    return {"error": "Not found."}, 404


# -- a listing: every token inside the organization passes -----------------------


@bp.get("/organizations/<int:org_id>/projects")
@require_scope("items:read", container=True)
def list_projects(org_id: int) -> dict[str, Any]:
    projects = Project.query.filter_by(org_id=org_id).order_by(Project.id)
    return {
        "values": [
            {"id": project.id, "name": project.name}
            for project in projects
            if current_token.reaches({"organization": org_id, "project": project.id})
        ]
    }


# -- nested routes: the object is looked up inside its parent --------------------


@bp.get("/organizations/<int:org_id>/projects/<int:project_id>/items")
@require_scope("items:read")
def list_items(org_id: int, project_id: int) -> dict[str, Any]:
    project = Project.query.filter_by(org_id=org_id, id=project_id).first_or_404()
    items = Item.query.filter_by(project_id=project.id).order_by(Item.id)
    return {"values": [item.to_json() for item in items]}


@bp.post("/organizations/<int:org_id>/projects/<int:project_id>/items")
@require_scope("items:write")
def add_item(org_id: int, project_id: int) -> tuple[dict[str, Any], int]:
    project = Project.query.filter_by(org_id=org_id, id=project_id).first_or_404()
    item = Item(project_id=project.id, title=title_from_body())
    db.session.add(item)
    db.session.commit()
    return item.to_json(), 201


@bp.delete("/organizations/<int:org_id>/projects/<int:project_id>")
@require_scope("projects:admin")
def delete_project(org_id: int, project_id: int) -> dict[str, Any]:
    project = Project.query.filter_by(org_id=org_id, id=project_id).first_or_404()
    Item.query.filter_by(project_id=project.id).delete()
    db.session.delete(project)
    db.session.commit()
    # Its tokens would work nowhere now; revoke them (and any of a level
    # below, had the model one).
    revoked = tokens.revoke_resource_tokens(
        resource={"organization": org_id, "project": project_id},
        revoked_by=current_token.actor,
    )
    return {"deleted": project_id, "tokens_revoked": revoked}


# -- a flat URL: a resolver names the item's project -----------------------------


@bp.get("/items/<int:item_id>")
@require_scope("items:read", resource=item_resource)
def show_item(item_id: int) -> dict[str, Any]:
    return db.get_or_404(Item, item_id).to_json()


@bp.patch("/items/<int:item_id>")
@require_scope("items:write", resource=item_resource)
def rename_item(item_id: int) -> dict[str, Any]:
    item = db.get_or_404(Item, item_id)
    item.title = title_from_body()
    db.session.commit()
    return item.to_json()


# -- scope only: data that belongs to no organization ---------------------------


@bp.get("/templates")
@require_scope("templates:read", bind=False)
def list_templates() -> dict[str, Any]:
    templates = Template.query.order_by(Template.id)
    return {"values": [{"id": t.id, "title": t.title} for t in templates]}
