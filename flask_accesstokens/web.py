"""What the JSON API and the admin pages share: who may manage, which
resource a URL names, and refusing access tokens.

Who may manage is a web concern, decided here once by asking the app's
``manager_loader``; the service below never asks. Errors are raised as
Werkzeug HTTP exceptions; each surface renders them its own way.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from functools import cache
from typing import Any

from flask import abort
from flask import Blueprint
from flask import request
from flask.blueprints import BlueprintSetupState
from flask.sansio.app import App
from werkzeug.routing import BaseConverter
from werkzeug.routing import Rule
from werkzeug.routing import ValidationError

from . import words
from .credentials import presents_token
from .credentials import query_is_utf8
from .resources import is_name
from .resources import Resource
from .resources import ResourceModel
from .state import app_state


class NameConverter(BaseConverter):
    """Resource names in management URLs: exactly what the service accepts
    (:func:`~flask_accesstokens.resources.check_name`), percent-decoded, so
    whatever ``create_token`` takes can be managed on every surface."""

    # The pattern already leaves out what is plainly refused (so the router
    # answers 404, not 405 from a rule of another method); to_python has
    # the last word.
    regex = r"(?!\.{1,2}$)[^/\s\x00-\x1f\x7f-\x9f]{1,255}"
    part_isolating = True

    def to_python(self, value: str) -> str:
        if not is_name(value):
            raise ValidationError()
        return value


#: The converter's name in the app's URL map.
CONVERTER = "accesstokens_name"


class _LazyBuilders(Rule):
    """Compiles a rule's URL builders on first use, not when it is added.
    Werkzeug compiles two builder functions per rule, most of the cost of
    adding one; an app built per test or per tenant pays only for the URLs
    it builds."""

    def _compile_builder(self, append_unknown: bool = True) -> Callable[..., tuple[str, str]]:
        compile_real = super()._compile_builder
        attribute = "_build_unknown" if append_unknown else "_build"

        def build(rule: Rule, *args: Any, **kwargs: Any) -> tuple[str, str]:
            real = compile_real(append_unknown).__get__(rule, None)
            setattr(rule, attribute, real)
            return real(*args, **kwargs)  # type: ignore[no-any-return]

        return build


@cache
def _lazy(base: type[Rule]) -> type[Rule]:
    """The app's own rule class, with lazily compiled builders."""
    if issubclass(base, _LazyBuilders):
        return base
    return type(f"Lazy{base.__name__}", (_LazyBuilders, base), {})


class _LazySetupState(BlueprintSetupState):
    def add_url_rule(
        self,
        rule: str,
        endpoint: str | None = None,
        view_func: Callable[..., Any] | None = None,
        **options: Any,
    ) -> None:
        """Flask's own registration, with the app's rule class made lazy for
        these rules only (at setup, before the app serves)."""
        app = self.app
        own = "url_rule_class" in vars(app)
        previous = app.url_rule_class
        app.url_rule_class = _lazy(previous)
        try:
            super().add_url_rule(rule, endpoint, view_func, **options)
        finally:
            if own:
                app.url_rule_class = previous
            else:
                del app.url_rule_class


class LazyBlueprint(Blueprint):
    """A blueprint whose rules compile their URL builders on first use: the
    management API and admin pages cost an app factory little. APIFlask's
    spec leaves it out (``enable_openapi``): the management API serves its
    own document."""

    enable_openapi = False

    def make_setup_state(
        self, app: App, options: dict[str, Any], first_registration: bool = False
    ) -> BlueprintSetupState:
        return _LazySetupState(self, app, options, first_registration)


def resource_rules(model: ResourceModel) -> list[tuple[str, str]]:
    """(level, URL rule) of every level of the model, the deepest first so a
    fixed segment never shadows a longer path."""
    return [(level.name, model.path(level.name)) for level in reversed(model.levels)]


def refuse_tokens_and_bad_queries(message: str) -> None:
    """Tokens never manage tokens, whatever the manager loader would say:
    a leaked token must not be able to mint more of itself. Checked before
    the app is asked anything. Only the extension's own credentials count:
    a user signed in with a JWT or Basic credentials is the loader's to judge."""
    prefix = app_state().settings.token_prefix
    if presents_token(request.environ.get("HTTP_AUTHORIZATION"), prefix):
        abort(403, message)
    if not query_is_utf8(request):
        abort(400, "The query string is not valid UTF-8.")


def resource_from_view_args(view_args: Mapping[str, Any] | None) -> Resource:
    """The resource a management URL names (its variables are level names).
    Names the converter let through are valid; anything else is a 404
    before the app is asked about it: no resource has it."""
    model = app_state().model
    names = {k: v for k, v in (view_args or {}).items() if k in model.names}
    try:
        return model.resource(names)
    except ValueError:
        abort(404, "No such resource.")


def resource_args(resource: Resource) -> dict[str, str]:
    """The URL arguments naming ``resource``, the inverse of the above."""
    return dict(resource.values)


def describe(resource: Resource) -> str:
    """``project API in workspace acme``: a resource in the model's words."""
    return words.describe(app_state().model, resource)


def require_manager(resource: Resource) -> str:
    """The signed-in user allowed to manage tokens on ``resource``, or 403."""
    state = app_state()
    loader = state.callbacks.manager_loader
    refusal = words.message("no_permission", state.settings.messages, resource=describe(resource))
    if loader is None:  # logged once at start-up (see AccessTokens)
        abort(403, refusal)
    user = state.call(loader, resource)
    if not isinstance(user, str) or not user:
        abort(403, refusal)
    return user
