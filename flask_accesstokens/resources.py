"""The app's resource model, and the binding check: does this token reach
this route?

An app declares its levels from the top (:class:`ResourceModel` of
:class:`Level`), the way Werkzeug's ``Map`` is made of ``Rule``\\ s: data,
read by the pipeline, the service, the store and every surface. Bitbucket's
workspace, project and repository are one such model, the default.

A resource is named by its level's *naming path*: the levels from the top
down to it. Normally that is every level above it; a level with
``loaded_parent`` skips its parent, which the app's ``parent_loader`` finds
(a Bitbucket repository is ``workspace/repository``; its project comes from
``project_loader``). The check fails closed: a route that names no resource
of the model, or one that cannot be compared, is denied, and a missing
resource is denied exactly like someone else's, so answers reveal nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from .errors import TokenValidationError

#: The first rounds' route arguments of the Bitbucket model.
DEFAULT_VIEW_ARGS = {"workspace": "workspace", "project": "project_key", "repository": "repo_slug"}
#: Longest resource name, as the columns hold it.
NAME_MAX_LENGTH = 255
_LEVEL_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}", re.ASCII)

#: ``parent_loader(child)``: the name of the resource one level above
#: ``child`` that holds it, or None when ``child`` does not exist.
ParentLoader = Callable[["Resource"], "str | None"]


def check_name(level: str, value: object) -> str:
    """The one rule for resource names, on every surface: ``str`` or ``int``
    (stored as ``str``), 1 to 255 characters, no ``/``, whitespace or control
    characters, and not ``.`` or ``..``. Raises :class:`TokenValidationError`
    (a ``ValueError``) naming the level."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TokenValidationError(level, "must be a string or an integer")
    text = str(value)
    if not text:
        raise TokenValidationError(level, "must not be empty")
    if len(text) > NAME_MAX_LENGTH:
        raise TokenValidationError(level, f"must be at most {NAME_MAX_LENGTH} characters")
    if text in (".", "..") or not text.isprintable() or any(c.isspace() or c == "/" for c in text):
        raise TokenValidationError(
            level, "must not contain whitespace, '/' or control characters, nor be '.' or '..'"
        )
    return text


def is_name(value: str) -> bool:
    try:
        check_name("name", value)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Level:
    """One level of the app's resources.

    :param name: a lowercase identifier (``"organization"``): the token type
        of tokens bound at this level and the key in resource mappings.
    :param arg: the route argument that names it (default: ``name``).
    :param segment: its part of management URLs (default: ``name + "s"``).
    :param label: what people read (default: ``name`` capitalised).
    :param loaded_parent: its resources are named without their parent
        (``workspace/repository``): the app's ``parent_loader`` finds it.
    :param credential_type: the ``X-Credential-Type`` of its tokens
        (default: ``<name>_access_token``).
    :param path: its management URL rule, when not the segments from the top
        (Bitbucket's ``/repositories/<workspace>/<repository>``); its
        variables are the naming path's level names.
    :param git: the reveal page shows git instructions for its tokens.
    """

    name: str
    arg: str = ""
    segment: str = ""
    label: str = ""
    loaded_parent: bool = False
    credential_type: str = ""
    path: str = ""
    git: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _LEVEL_NAME.fullmatch(self.name):
            raise ValueError(f"Level name {self.name!r}: a lowercase identifier")
        defaults = {
            "arg": self.name,
            "segment": f"{self.name}s",
            "label": self.name.replace("_", " ").capitalize(),
            "credential_type": f"{self.name}_access_token",
        }
        for attr, default in defaults.items():
            if not getattr(self, attr):
                object.__setattr__(self, attr, default)
        if not re.fullmatch(r"[A-Za-z0-9._~-]+", self.segment):
            raise ValueError(f"Level {self.name!r}: segment {self.segment!r} is not a URL segment")


class Resource:
    """One resource: its level (``type``) and the names of its naming path,
    from the top (``values``). Bitbucket's keep ``.workspace``, ``.project``
    and ``.repository``."""

    __slots__ = ("type", "values", "key")

    def __init__(self, type: str, values: Mapping[str, str]) -> None:  # noqa: A002
        self.type = type
        self.values: dict[str, str] = dict(values)
        #: The stored form: ``level=name`` pairs joined by ``/`` (names hold
        #: no ``/``), so a subtree is a key prefix.
        self.key = "/".join(f"{k}={v}" for k, v in self.values.items())

    @classmethod
    def from_key(cls, type: str, key: str) -> Resource:  # noqa: A002
        values = dict(part.split("=", 1) for part in key.split("/")) if key else {}
        return cls(type, values)

    @classmethod
    def of(
        cls, workspace: str, project: str | None = None, repository: str | None = None
    ) -> Resource:
        """A Bitbucket resource from its names; ``ValueError`` names a bad field."""
        if not workspace:
            raise ValueError("workspace: required")
        if repository and project:
            raise ValueError("project: give a project or a repository, not both")
        if repository:
            return cls("repository", {"workspace": workspace, "repository": repository})
        if project:
            return cls("project", {"workspace": workspace, "project": project})
        return cls("workspace", {"workspace": workspace})

    @property
    def workspace(self) -> str | None:
        return self.values.get("workspace")

    @property
    def project(self) -> str | None:
        return self.values.get("project")

    @property
    def repository(self) -> str | None:
        return self.values.get("repository")

    @property
    def name(self) -> str:
        """The name of the resource itself (its own level's value)."""
        return self.values.get(self.type, "")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Resource):
            return NotImplemented
        return self.type == other.type and self.key == other.key

    def __hash__(self) -> int:
        return hash((self.type, self.key))

    def __str__(self) -> str:
        return "/".join(self.values.values())

    def __repr__(self) -> str:
        return f"Resource({self.type!r}, {self.values!r})"


#: A route value that contradicts what the app's parent loader says.
_CONTRADICTED = object()


@dataclass(frozen=True)
class ResourceModel:
    """The app's levels, from the top. Each level's resources live in one
    resource of the level above."""

    levels: tuple[Level, ...]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)
    _naming: dict[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)

    def __init__(self, *levels: Level) -> None:
        if not levels:
            raise ValueError("ResourceModel: at least one Level")
        for level in levels:
            if not isinstance(level, Level):
                raise TypeError(f"ResourceModel: {level!r} is not a Level")
        if levels[0].loaded_parent:
            raise ValueError(f"Level {levels[0].name!r}: the top level has no parent to load")
        for attr in ("name", "arg", "segment"):
            seen = [getattr(level, attr) for level in levels]
            if len(set(seen)) != len(seen):
                raise ValueError(f"ResourceModel: two levels share the {attr} in {seen}")
        object.__setattr__(self, "levels", tuple(levels))
        index = {level.name: i for i, level in enumerate(levels)}
        naming: dict[str, tuple[str, ...]] = {}
        for i, level in enumerate(levels):
            above = () if i == 0 else naming[levels[i - 1].name]
            if level.loaded_parent:
                above = above[:-1]
            naming[level.name] = (*above, level.name)
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_naming", naming)
        for level in levels:
            if level.path:
                wanted = set(naming[level.name])
                if set(re.findall(r"<(?:[^<>:]+:)?([^<>]+)>", level.path)) != wanted:
                    raise ValueError(
                        f"Level {level.name!r}: path {level.path!r} must name"
                        f" <{'>, <'.join(naming[level.name])}>"
                    )

    @classmethod
    def bitbucket(cls, view_args: Mapping[str, str] | None = None) -> ResourceModel:
        """Bitbucket Cloud's workspaces, projects and repositories: the default.
        A repository is named in its workspace; its project comes from
        ``project_loader``."""
        args = {**DEFAULT_VIEW_ARGS, **(view_args or {})}
        return cls(
            Level("workspace", arg=args["workspace"]),
            Level("project", arg=args["project"]),
            Level(
                "repository",
                arg=args["repository"],
                segment="repositories",
                loaded_parent=True,
                credential_type="repo_access_token",
                path="/repositories/<workspace>/<repository>",
                git=True,
            ),
        )

    # -- reading the model ------------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(level.name for level in self.levels)

    def level(self, name: str) -> Level:
        try:
            return self.levels[self._index[name]]
        except (KeyError, TypeError):
            raise ValueError(f"unknown level {name!r}: one of {', '.join(self.names)}") from None

    def naming(self, name: str) -> tuple[str, ...]:
        """The levels that name a resource of level ``name``, from the top."""
        return self._naming[name]

    def depth(self, name: str) -> int:
        return self._index[name]

    def path(self, name: str) -> str:
        """The management URL rule of level ``name`` (without
        ``/access-tokens``), its variables named after the levels."""
        level = self.level(name)
        if level.path:
            return re.sub(r"<([a-z][a-z0-9_]*)>", r"<accesstokens_name:\1>", level.path)
        return "".join(
            f"/{self.level(n).segment}/<accesstokens_name:{n}>" for n in self.naming(name)
        )

    def is_bitbucket(self) -> bool:
        return self.names == ("workspace", "project", "repository")

    def resource(self, values: Mapping[str, object]) -> Resource:
        """The resource a mapping names (level → name, from the top down to
        the bound level), every name checked. ``ValueError`` names the field."""
        if not isinstance(values, Mapping) or not values:
            raise TokenValidationError("resource", "must name at least the top level")
        for key in values:
            if key not in self._index:
                raise TokenValidationError(
                    "resource", f"unknown level {key!r}: one of {', '.join(self.names)}"
                )
        given = [name for name in self.names if values.get(name) is not None]
        if not given:
            raise TokenValidationError(self.levels[0].name, "required")
        bound = given[-1]
        naming = self._naming[bound]
        for name in given:
            if name not in naming:
                child = next(n for n in self.names if n in given and n not in naming)
                raise TokenValidationError(
                    child,
                    f"give a {child} or a {bound}, not both: a {bound} is named by "
                    f"{', '.join(naming)}",
                )
        missing = [name for name in naming if name not in given]
        if missing:
            raise TokenValidationError(missing[0], "required")
        return Resource(bound, {name: check_name(name, values[name]) for name in naming})

    def from_route(self, view_args: Mapping[str, Any] | None) -> dict[str, str]:
        """What a route's arguments name: level → ``str()`` of the value."""
        if not view_args:
            return {}
        named = {}
        for level in self.levels:
            value = view_args.get(level.arg)
            if value is not None and value != "":
                named[level.name] = value if type(value) is str else str(value)
        return named

    # -- the binding ---------------------------------------------------------------------

    def reaches(
        self, bound: Resource, named: Mapping[str, str], loader: ParentLoader | None
    ) -> bool:
        """Whether a token bound to ``bound`` may act on what a route names:
        that resource or anything inside it, and every level the route names
        down to the token's level agrees with the token's."""
        if not named:
            return False
        depth = self._index.get(bound.type)
        if depth is None or not any(self._index[n] >= depth for n in named):
            return False
        values = bound.values
        for level in self.levels[: depth + 1]:
            mine = values.get(level.name)
            if mine is None:
                # A loaded parent of the token's own level (a repository
                # token's project): a route naming it must name the real one.
                if level.name in named and self._route_value(level, named, loader) in (
                    None,
                    _CONTRADICTED,
                ):
                    return False
                continue
            if self._route_value(level, named, loader) != mine:
                return False
        return True

    def within(
        self, bound: Resource, named: Mapping[str, str], loader: ParentLoader | None
    ) -> bool:
        """Whether a token bound to ``bound`` sits in the container a listing
        route names, or reaches it (bound to it or to what holds it): the
        view then filters with :meth:`reaches` per item. A route naming
        nothing holds every token."""
        if not named:
            return True
        depth = self._index.get(bound.type)
        deepest = max(self._index[n] for n in named)
        if depth is None:
            return False
        if depth <= deepest:  # bound to the container, or to what holds it
            return self.reaches(bound, named, loader)
        for level in self.levels[: deepest + 1]:
            mine = bound.values.get(level.name)
            if mine is None:
                mine = self._token_parent(bound, level, loader)
            if mine is None or self._route_value(level, named, loader) != mine:
                return False
        return True

    def _route_value(
        self, level: Level, named: Mapping[str, str], loader: ParentLoader | None
    ) -> object:
        """The route's name for ``level``: as named, or found by the loader
        from a named child whose parent is loaded, checked against each other
        when both exist."""
        depth = self._index[level.name]
        if depth + 1 < len(self.levels):
            child = self.levels[depth + 1]
            if child.loaded_parent and child.name in named:
                naming = self._naming[child.name]
                if loader is None or any(n not in named for n in naming):
                    loaded = None
                else:
                    loaded = loader(Resource(child.name, {n: named[n] for n in naming}))
                if level.name in named:
                    return named[level.name] if loaded == named[level.name] else _CONTRADICTED
                return loaded
        return named.get(level.name)

    def _token_parent(
        self, bound: Resource, level: Level, loader: ParentLoader | None
    ) -> str | None:
        """The name at ``level`` of a token's loaded parent."""
        depth = self._index[level.name]
        child = self.levels[depth + 1]
        if loader is None or not child.loaded_parent or child.name != bound.type:
            return None
        return loader(bound)
