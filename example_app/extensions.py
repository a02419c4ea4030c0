"""The app's extension objects, shared by every module and every app instance."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase

from flask_accesstokens import AccessTokens


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
tokens = AccessTokens()

# Models subclass ``Model``: it is ``db.Model`` at run time, and a class mypy can see.
if TYPE_CHECKING:
    Model = Base
else:
    Model = db.Model
