"""Per-app state: what ``init_app`` builds for one app and every layer reads.

A low module on purpose: the decorator, the pipeline, the service and the
surfaces all find an app's state here, through ``app.extensions``, and none
of them imports the extension that put it there.
"""

from __future__ import annotations

from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from flask import current_app
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from .config import Settings
from .resources import Resource
from .resources import ResourceModel
from .scopes import ScopeCatalog
from .tokenformat import Digester

#: ``app.extensions`` keys. ``"accesstokens"`` is the :class:`AccessTokens`
#: object itself, as the contract says; the rest are internal.
EXTENSION_KEY = "accesstokens"
STATE_KEY = "accesstokens.state"
PIPELINE_KEY = "accesstokens.pipeline"
SERVICE_KEY = "accesstokens.service"
#: Set in the WSGI environ of a token-authenticated request; responses to
#: such requests lose every ``Set-Cookie`` header.
ENVIRON_KEY = "flask_accesstokens.token"
#: Set in the WSGI environ to the scope headers (Bitbucket's ``X-OAuth-Scopes``
#: and friends) the response will carry, error responses included.
HEADERS_KEY = "flask_accesstokens.headers"
#: Set in the WSGI environ to the :class:`AccessTokenError` a request was
#: refused with, so the challenge an app's error handler dropped can be put
#: back on the answer.
REFUSAL_KEY = "flask_accesstokens.refusal"

ParentLoader = Callable[[Resource], "str | None | Awaitable[str | None]"]
ManagerLoader = Callable[[Resource], "str | None | Awaitable[str | None]"]
TypesLoader = Callable[[str], "Iterable[str] | Awaitable[Iterable[str]]"]
ExistsLoader = Callable[[Resource], "bool | Awaitable[bool]"]
UnauthorizedHandler = Callable[[Resource], Any]


@dataclass
class Callbacks:
    """What the host app tells the extension. One object per extension,
    shared by the apps it serves, filled by its decorator methods."""

    #: Finds the parent of a resource whose level has ``loaded_parent``
    #: (``project_loader`` registers one for Bitbucket's repositories).
    parent_loader: ParentLoader | None = None
    manager_loader: ManagerLoader | None = None
    allowed_types_loader: TypesLoader | None = None
    resource_exists: ExistsLoader | None = None
    unauthorized_handler: UnauthorizedHandler | None = None


class AppState:
    """One app's settings, catalog, callbacks and database."""

    def __init__(
        self,
        app: Flask,
        db: SQLAlchemy,
        settings: Settings,
        catalog: ScopeCatalog,
        callbacks: Callbacks,
        model: ResourceModel,
    ) -> None:
        self.app = app
        self.model = model
        self.db = db
        self.settings = settings
        self.catalog = catalog
        self.callbacks = callbacks

    @cached_property
    def digester(self) -> Digester:
        """Resolved on first use; ``init_app`` made sure a key is set."""
        keys: Iterable[str | bytes | None] | None = self.settings.digest_keys
        if keys is None:
            config = self.app.config
            keys = (config.get("SECRET_KEY"), *(config.get("SECRET_KEY_FALLBACKS") or ()))
        return Digester([k for k in keys if k])

    def call(self, callback: Callable[..., Any], *args: Any) -> Any:
        """Run an app callback, sync or async, as Flask runs views."""
        return self.app.ensure_sync(callback)(*args)


def app_state(app: Flask | None = None) -> AppState:
    """The state of ``app`` (default: the current app)."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        return app.extensions[STATE_KEY]  # type: ignore[no-any-return]
    except KeyError:
        raise RuntimeError("AccessTokens.init_app() was not called on this app") from None
