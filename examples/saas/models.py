"""The SaaS's own tables: organizations, their projects, the items in each
project, its users and who belongs to which organization. Ids are integers,
as most apps' are."""

from __future__ import annotations

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import ForeignKey
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class Organization(db.Model):  # type: ignore[name-defined,misc]
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


class Project(db.Model):  # type: ignore[name-defined,misc]
    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), index=True)
    name: Mapped[str]


class Item(db.Model):  # type: ignore[name-defined,misc]
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"), index=True)
    title: Mapped[str]
    project: Mapped[Project] = relationship()

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "project": self.project_id, "title": self.title}


class Template(db.Model):  # type: ignore[name-defined,misc]
    """Item templates every organization shares: data bound to no resource."""

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str]


class Member(db.Model):  # type: ignore[name-defined,misc]
    """A user of the SaaS in one organization; admins manage its tokens."""

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    org_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), index=True)
    password_hash: Mapped[str]
    admin: Mapped[bool] = mapped_column(default=False)
