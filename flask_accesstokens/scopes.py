"""The scope catalog: which scopes exist, which token types may hold them and
what each one implies.

Implication is resolved once per distinct set of granted scopes and cached, so
the request path pays a dictionary lookup, not a graph walk.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field

from .errors import UnknownScopeError

#: The Bitbucket model's levels, which the default catalog names.
TOKEN_TYPES: tuple[str, ...] = ("repository", "project", "workspace")

_NOT_REPOSITORY = frozenset({"project", "workspace"})
_WORKSPACE_ONLY = frozenset({"workspace"})


@dataclass(frozen=True)
class Scope:
    """One scope: its name, the token types (levels) that may hold it (None:
    every level), what it implies."""

    name: str
    token_types: frozenset[str] | None
    implies: tuple[str, ...] = ()
    label: str = ""


@dataclass
class ScopeCatalog:
    """The scopes an app knows. Start from :func:`default_catalog` and
    :meth:`register` your own.

    .. versionadded:: 0.1
    """

    scopes: dict[str, Scope] = field(default_factory=dict)
    _closures: dict[frozenset[str], frozenset[str]] = field(
        default_factory=dict, init=False, repr=False
    )

    def register(
        self,
        name: str,
        *,
        implies: Iterable[str] = (),
        token_types: Iterable[str] | None = None,
        label: str = "",
    ) -> Scope:
        """Add a scope. Every implied scope must already be registered, which
        also rules out cycles. ``token_types`` names the levels whose tokens
        may hold it (default: every level); ``init_app`` checks them against
        the app's resource model."""
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise ValueError(f"scope name {name!r} must be non-empty and contain no spaces")
        types = None
        if token_types is not None:
            if isinstance(token_types, str):
                raise ValueError(f"scope {name!r}: token_types must be a list of level names")
            types = frozenset(token_types)
            if not types:
                raise ValueError(f"scope {name!r}: token_types must name at least one level")
        implied = tuple(implies)
        for other in implied:
            if other not in self.scopes:
                raise UnknownScopeError(f"scope {name!r} implies unknown scope {other!r}")
        scope = Scope(name, types, implied, label or name)
        self.scopes[name] = scope
        self._closures.clear()
        return scope

    def __contains__(self, name: object) -> bool:
        return name in self.scopes

    def __iter__(self) -> Iterator[Scope]:
        return iter(self.scopes.values())

    def closure(self, granted: Iterable[str]) -> frozenset[str]:
        """The granted scopes plus everything they imply, transitively.
        Unknown names grant nothing."""
        key = frozenset(granted)
        cached = self._closures.get(key)
        if cached is not None:
            return cached
        result: set[str] = set()
        stack = [name for name in key if name in self.scopes]
        while stack:
            name = stack.pop()
            if name not in result:
                result.add(name)
                stack.extend(self.scopes[name].implies)
        frozen = frozenset(result)
        self._closures[key] = frozen
        return frozen

    def implied_by(self, granted: Iterable[str]) -> frozenset[str]:
        """What ``granted`` implies beyond itself, for "(implied)" labels in UIs."""
        given = frozenset(granted)
        return self.closure(given) - given

    def check_known(self, names: Iterable[str], where: str = "") -> None:
        """Raise :class:`UnknownScopeError` for a name this catalog lacks, with
        the near miss: a view protected by it could never be reached."""
        for name in names:
            if name not in self.scopes:
                close = difflib.get_close_matches(name, list(self.scopes), n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                place = f" on {where}" if where else ""
                raise UnknownScopeError(
                    f"unknown scope {name!r}{place}{hint} Register it on the app's"
                    " ScopeCatalog (AccessTokens(scopes=...)) before serving the view."
                )

    def near_miss(self, name: str) -> str | None:
        """The registered scope ``name`` was probably meant to be."""
        close = difflib.get_close_matches(name, list(self.scopes), n=1, cutoff=0.6)
        return close[0] if close else None

    def check_levels(self, levels: Iterable[str]) -> None:
        """Every level a scope names must be one of the app's resource model."""
        known = set(levels)
        for scope in self.scopes.values():
            unknown = sorted((scope.token_types or frozenset()) - known)
            if unknown:
                raise ValueError(
                    f"scope {scope.name!r} names token types {unknown} that the resource model"
                    f" lacks (levels: {', '.join(levels)}): give AccessTokens(scopes=...) a"
                    " catalog of the app's own scopes"
                )

    def allowed_for(self, token_type: str) -> list[Scope]:
        """The scopes a token of this type may hold, in catalog order."""
        return [
            s for s in self.scopes.values() if s.token_types is None or token_type in s.token_types
        ]

    def validate(self, token_type: str, scopes: Iterable[str]) -> tuple[str, ...]:
        """Check scopes for a new token; return them de-duplicated, in catalog
        order. Raises :class:`ValueError` naming the first bad one."""
        wanted = list(scopes)
        if not wanted:
            raise ValueError("scopes: at least one scope is required")
        for name in wanted:
            if not isinstance(name, str) or name not in self.scopes:
                close = difflib.get_close_matches(str(name), list(self.scopes), n=1, cutoff=0.5)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise UnknownScopeError(f"scopes: unknown scope {name!r}{hint}")
            types = self.scopes[name].token_types
            if types is not None and token_type not in types:
                raise ValueError(f"scopes: a {token_type} token cannot hold {name!r}")
        chosen = set(wanted)
        return tuple(name for name in self.scopes if name in chosen)


def check_names(names: Iterable[str]) -> tuple[str, ...]:
    """Decoration-time check, before any app exists: the names are scope
    names at all. Whether the app knows them is its catalog's to say, when
    the app serves its first request (:meth:`ScopeCatalog.check_known`), so
    an app with its own catalog may name anything, ``projects:read`` too."""
    result = tuple(names)
    if not result:
        raise ValueError("at least one scope is required")
    for name in result:
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise UnknownScopeError(f"{name!r} is not a scope name")
    return result


def default_catalog() -> ScopeCatalog:
    """A new catalog holding Bitbucket Cloud's access-token scopes and their
    implications: each app may add its own to it."""
    catalog = ScopeCatalog()
    add = catalog.register
    add("repository", label="Repositories: Read")
    add("repository:write", implies=["repository"], label="Repositories: Write")
    add("repository:admin", label="Repositories: Admin")
    add("repository:delete", label="Repositories: Delete")
    add("pullrequest", implies=["repository"], label="Pull requests: Read")
    add(
        "pullrequest:write",
        implies=["pullrequest", "repository:write"],
        label="Pull requests: Write",
    )
    add("webhook", label="Webhooks: Read and write")
    add("pipeline", label="Pipelines: Read")
    add("pipeline:write", implies=["pipeline"], label="Pipelines: Write")
    add("pipeline:variable", implies=["pipeline"], label="Pipelines: Edit variables")
    add("runner", label="Runners: Read")
    add("runner:write", implies=["runner"], label="Runners: Write")
    add("project", implies=["repository"], token_types=_NOT_REPOSITORY, label="Projects: Read")
    add("project:admin", token_types=_WORKSPACE_ONLY, label="Projects: Admin")
    add("account", token_types=_WORKSPACE_ONLY, label="Account: Read")
    return catalog


#: The names in Bitbucket's catalog: immutable, the same for every app.
DEFAULT_SCOPES: frozenset[str] = frozenset(scope.name for scope in default_catalog())
