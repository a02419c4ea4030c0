"""Signing in: the SaaS's own session login. Tokens never sign in, and the
access-token pages are managed by signed-in organization admins (see
``manager`` in ``access.py``)."""

from __future__ import annotations

from flask import Blueprint
from flask import redirect
from flask import render_template_string
from flask import request
from flask import session
from flask import url_for
from werkzeug.security import check_password_hash
from werkzeug.wrappers import Response

from .models import db
from .models import Member
from .models import Organization
from .models import Project

bp = Blueprint("auth", __name__)

PAGE = """<!doctype html>
<title>Items</title>
{% if member %}
  <p>Signed in as {{ member.name }} in {{ organization.name }}.
  <form method="post" action="{{ url_for('auth.logout') }}">
    <input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
    <button>Sign out</button></form>
  {% if member.admin %}
  <h2>Access tokens</h2>
  <ul>
    <li><a href="{{ url_for('accesstokens_admin.list_tokens', organization=organization.id) }}">
      {{ organization.name }}</a>
    {% for project in projects %}
    <li><a href="{{ url_for('accesstokens_admin.list_tokens',
                            organization=organization.id, project=project.id) }}">
      {{ organization.name }} / {{ project.name }}</a>
    {% endfor %}
  </ul>
  {% endif %}
{% else %}
  <form method="post" action="{{ url_for('auth.login') }}">
    <input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
    {% if error %}<p>{{ error }}</p>{% endif %}
    <label>Name <input name="name" autocomplete="username"></label>
    <label>Password <input name="password" type="password"
                           autocomplete="current-password"></label>
    <button>Sign in</button>
  </form>
{% endif %}
"""


def current_member() -> Member | None:
    """The signed-in member, from the session cookie only."""
    member_id = session.get("member_id")
    return None if member_id is None else db.session.get(Member, member_id)


@bp.get("/")
def home() -> str:
    member = current_member()
    organization = projects = None
    if member is not None:
        organization = db.session.get(Organization, member.org_id)
        projects = Project.query.filter_by(org_id=member.org_id).order_by(Project.id).all()
    return render_template_string(PAGE, member=member, organization=organization, projects=projects)


@bp.post("/login")
def login() -> Response | tuple[str, int]:
    member = Member.query.filter_by(name=request.form.get("name", "")).first()
    if member is None or not check_password_hash(
        member.password_hash, request.form.get("password", "")
    ):
        return render_template_string(PAGE, member=None, error="Wrong name or password."), 401
    session.clear()
    session["member_id"] = member.id
    return redirect(url_for("auth.home"))


@bp.post("/logout")
def logout() -> Response:
    session.clear()
    return redirect(url_for("auth.home"))
