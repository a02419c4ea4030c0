"""The code host's own tables: who, where, and the things a repository holds."""

from __future__ import annotations

import uuid
from datetime import datetime
from datetime import timezone
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy import ForeignKey
from sqlalchemy import JSON
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from .extensions import db
from .extensions import Model

PLANS = ("free", "premium")
ROLES = ("admin", "member")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_uuid() -> str:
    return str(uuid.uuid4())


class User(Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), default=new_uuid, unique=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(255))
    password_hash: Mapped[str] = mapped_column(String(255))

    memberships: Mapped[list[Membership]] = relationship(
        back_populates="user", cascade="all, delete-orphan"
    )


class Workspace(Model):
    __tablename__ = "workspaces"

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), default=new_uuid, unique=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    plan: Mapped[str] = mapped_column(String(16), default="free")
    created_on: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    memberships: Mapped[list[Membership]] = relationship(
        back_populates="workspace", cascade="all, delete-orphan"
    )
    projects: Mapped[list[Project]] = relationship(
        back_populates="workspace", cascade="all, delete-orphan", order_by="Project.key"
    )
    runners: Mapped[list[Runner]] = relationship(
        back_populates="workspace", cascade="all, delete-orphan"
    )

    @property
    def is_premium(self) -> bool:
        return self.plan == "premium"


class Membership(Model):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id", "workspace_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"))
    role: Mapped[str] = mapped_column(String(16), default="member")
    added_on: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    user: Mapped[User] = relationship(back_populates="memberships")
    workspace: Mapped[Workspace] = relationship(back_populates="memberships")


class Project(Model):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("workspace_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), default=new_uuid, unique=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"))
    key: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    is_private: Mapped[bool] = mapped_column(default=True)
    created_on: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_on: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    workspace: Mapped[Workspace] = relationship(back_populates="projects")
    repositories: Mapped[list[Repository]] = relationship(
        back_populates="project", cascade="all, delete-orphan", order_by="Repository.slug"
    )


class Repository(Model):
    __tablename__ = "repositories"
    __table_args__ = (UniqueConstraint("workspace_id", "slug"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), default=new_uuid, unique=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    slug: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    is_private: Mapped[bool] = mapped_column(default=True)
    created_on: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_on: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    workspace: Mapped[Workspace] = relationship()
    project: Mapped[Project] = relationship(back_populates="repositories")
    pull_requests: Mapped[list[PullRequest]] = relationship(
        back_populates="repository", cascade="all, delete-orphan"
    )
    webhooks: Mapped[list[Webhook]] = relationship(
        back_populates="repository", cascade="all, delete-orphan"
    )
    variables: Mapped[list[PipelineVariable]] = relationship(
        back_populates="repository", cascade="all, delete-orphan"
    )
    pipelines: Mapped[list[Pipeline]] = relationship(
        back_populates="repository", cascade="all, delete-orphan"
    )
    runners: Mapped[list[Runner]] = relationship(
        back_populates="repository", cascade="all, delete-orphan"
    )

    @property
    def full_name(self) -> str:
        return f"{self.workspace.slug}/{self.slug}"


class PullRequest(Model):
    __tablename__ = "pull_requests"
    __table_args__ = (UniqueConstraint("repository_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id"))
    #: The id Bitbucket shows: numbered per repository, from 1.
    number: Mapped[int]
    title: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    source_branch: Mapped[str] = mapped_column(String(255))
    destination_branch: Mapped[str] = mapped_column(String(255), default="main")
    state: Mapped[str] = mapped_column(String(16), default="OPEN")
    author: Mapped[str] = mapped_column(String(255))
    closed_by: Mapped[str | None] = mapped_column(String(255))
    created_on: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_on: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    repository: Mapped[Repository] = relationship(back_populates="pull_requests")
    approvals: Mapped[list[Approval]] = relationship(
        back_populates="pull_request", cascade="all, delete-orphan", order_by="Approval.id"
    )
    comments: Mapped[list[PullRequestComment]] = relationship(
        back_populates="pull_request",
        cascade="all, delete-orphan",
        order_by="PullRequestComment.id",
    )


class PullRequestComment(Model):
    """A comment on a pull request, in Bitbucket's raw (Markdown) form."""

    __tablename__ = "pull_request_comments"

    id: Mapped[int] = mapped_column(primary_key=True)
    pull_request_id: Mapped[int] = mapped_column(ForeignKey("pull_requests.id"))
    raw: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(255))
    created_on: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_on: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    pull_request: Mapped[PullRequest] = relationship(back_populates="comments")


class Approval(Model):
    """One approval of a pull request, by a token's bot user (named as its author)."""

    __tablename__ = "pull_request_approvals"
    __table_args__ = (UniqueConstraint("pull_request_id", "approver"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    pull_request_id: Mapped[int] = mapped_column(ForeignKey("pull_requests.id"))
    approver: Mapped[str] = mapped_column(String(255))
    approved_on: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    pull_request: Mapped[PullRequest] = relationship(back_populates="approvals")


class Webhook(Model):
    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), default=new_uuid, unique=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id"))
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str] = mapped_column(String(255), default="")
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    repository: Mapped[Repository] = relationship(back_populates="webhooks")


class PipelineVariable(Model):
    __tablename__ = "pipeline_variables"
    __table_args__ = (UniqueConstraint("repository_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), default=new_uuid, unique=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id"))
    key: Mapped[str] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(Text, default="")
    secured: Mapped[bool] = mapped_column(default=False)
    created_by: Mapped[str] = mapped_column(String(255))

    repository: Mapped[Repository] = relationship(back_populates="variables")


class Pipeline(Model):
    __tablename__ = "pipelines"
    __table_args__ = (UniqueConstraint("repository_id", "build_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), default=new_uuid, unique=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id"))
    build_number: Mapped[int]
    ref_type: Mapped[str] = mapped_column(String(16), default="branch")
    ref_name: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(32), default="PENDING")
    creator: Mapped[str] = mapped_column(String(255))
    created_on: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    repository: Mapped[Repository] = relationship(back_populates="pipelines")


class Runner(Model):
    """A self-hosted runner, registered on a workspace or on one repository."""

    __tablename__ = "runners"

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), default=new_uuid, unique=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"))
    repository_id: Mapped[int | None] = mapped_column(ForeignKey("repositories.id"))
    name: Mapped[str] = mapped_column(String(255))
    labels: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_by: Mapped[str] = mapped_column(String(255))
    created_on: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    workspace: Mapped[Workspace] = relationship(back_populates="runners")
    repository: Mapped[Repository | None] = relationship(back_populates="runners")


def find_workspace(slug: str) -> Workspace | None:
    return db.session.execute(db.select(Workspace).filter_by(slug=slug)).scalar_one_or_none()


def find_project(workspace: str, key: str) -> Project | None:
    return db.session.execute(
        db.select(Project).join(Workspace).filter(Workspace.slug == workspace, Project.key == key)
    ).scalar_one_or_none()


def find_repository(workspace: str, slug: str) -> Repository | None:
    return db.session.execute(
        db.select(Repository)
        .join(Workspace)
        .filter(Workspace.slug == workspace, Repository.slug == slug)
    ).scalar_one_or_none()


def find_user(username: str) -> User | None:
    return db.session.execute(db.select(User).filter_by(username=username)).scalar_one_or_none()


def role_in(user: User, workspace: str) -> str | None:
    """The user's role in a workspace, or None when they are not a member."""
    for membership in user.memberships:
        if membership.workspace.slug == workspace:
            return membership.role
    return None
