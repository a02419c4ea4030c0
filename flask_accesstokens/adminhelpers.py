"""What the admin pages' templates are given: URLs in the model's paths,
labels in its words, times, and the create form's scope choices. No view
and no state: ``admin.py`` serves the pages and hands these to them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta
from datetime import timezone
from typing import Any

from flask import current_app
from flask import url_for
from werkzeug.routing import BuildError

from . import words
from .errors import TokenValidationError
from .leastprivilege import Opening
from .leastprivilege import routes_by_scope
from .models import AccessToken
from .models import utcnow
from .resources import Resource
from .servicebase import resource_of
from .state import app_state
from .web import resource_args

#: The admin blueprint's name, which its endpoints carry.
BLUEPRINT = "accesstokens_admin"


def resource_url(endpoint: str, resource: Resource, **values: Any) -> str:
    """The URL of an admin page of ``resource``."""
    return url_for(f"{BLUEPRINT}.{endpoint}", **{**values, **resource_args(resource)})


def token_url(endpoint: str, token: AccessToken, **values: Any) -> str:
    """The URL of an admin page of one token, under its own resource."""
    return resource_url(endpoint, resource_of(token), token_id=token.id, **values)


def public_url(value: str | None) -> str | None:
    """A reported URL, if it may be a link: http(s) only, never ``javascript:``."""
    if value and value.lower().startswith(("https://", "http://")):
        return value
    return None


def format_time(value: datetime | None, empty: str = "Never") -> str:
    if value is None:
        return empty
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def scope_labels(names: Any) -> list[str]:
    catalog = app_state().catalog
    return [catalog.scopes[n].label if n in catalog else n for n in names]


def implied_labels(names: Any) -> list[str]:
    """Labels of what ``names`` imply beyond themselves."""
    return sorted(scope_labels(app_state().catalog.implied_by(names)))


def expires_soon(token: AccessToken) -> bool:
    """Active and within the largest ``ACCESSTOKENS_EXPIRY_WARNINGS``
    threshold of its expiry: marked in the lists."""
    warnings = app_state().settings.expiry_warnings
    return bool(warnings) and token.expires_within(timedelta(days=max(warnings)))


def level_label(name: str) -> str:
    """A level's label, as people read it."""
    return app_state().model.level(name).label


def works_on(level: str) -> str:
    state = app_state()
    return words.works_on(state.model, level, state.settings.messages)


def git_path(token: AccessToken) -> str | None:
    return words.git_path(app_state().model, resource_of(token))


@dataclass(frozen=True)
class ScopeChoice:
    """One checkbox of the create form."""

    name: str
    label: str
    action: str
    #: Labels of what this scope grants besides itself, for "also grants" text.
    also_grants: tuple[str, ...]
    #: Names of the same, for the progressive-enhancement script.
    implies: tuple[str, ...]
    checked: bool
    implied: bool
    #: The app's protected routes this scope opens ("GET /repos/<slug>").
    opens: tuple[str, ...] = ()


def scope_groups(token_type: str, chosen: list[str]) -> list[tuple[str, list[ScopeChoice]]]:
    """The scopes a token type may hold, grouped as Bitbucket groups them:
    a label "Repositories: Write" is action "Write" of group "Repositories"."""
    catalog = app_state().catalog
    implied_now = catalog.implied_by(chosen)
    opened = routes_by_scope(current_app, catalog)
    groups: dict[str, list[ScopeChoice]] = {}
    for scope in catalog.allowed_for(token_type):
        group, sep, action = scope.label.partition(": ")
        if not sep:
            group, action = "Other", scope.label
        implies = tuple(sorted(catalog.implied_by([scope.name])))
        groups.setdefault(group, []).append(
            ScopeChoice(
                name=scope.name,
                label=scope.label,
                action=action,
                also_grants=tuple(scope_labels(implies)),
                implies=implies,
                checked=scope.name in chosen,
                implied=scope.name in implied_now,
                opens=tuple(_opening(o) for o in opened.get(scope.name, ())),
            )
        )
    return list(groups.items())


def _opening(opening: Opening) -> str:
    route = opening.route
    text = f"{' '.join(route.methods)} {route.rule}"
    if opening.also_needs:
        text += f" (with {', '.join(opening.also_needs)})"
    return text


def expiry_bounds() -> tuple[date, date | None]:
    """First and last day the date field may take, from the policy."""
    now = utcnow()
    limit = app_state().settings.max_lifetime
    last = None if limit is None else (now + limit).date()
    return (now + timedelta(days=1)).date(), last


def parse_expiry(raw: str) -> datetime | None:
    """A date means "stops working at 00:00 UTC that day"."""
    if not raw.strip():
        return None
    try:
        day = date.fromisoformat(raw.strip())
    except ValueError:
        raise TokenValidationError("expires_at", "must be a date like 2030-12-31") from None
    return datetime.combine(day, time(), tzinfo=timezone.utc)


def token_self_url() -> str | None:
    """A URL every token may GET (its own description), for the reveal page's
    curl example; None when the JSON API is not mounted."""
    try:
        return url_for("accesstokens_api.self_get", _external=True)
    except BuildError:
        return None
