"""The app's extension objects, shared by every module and every app instance."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect  # type: ignore[import-untyped]
from sqlalchemy.orm import DeclarativeBase

from flask_accesstokens import AccessTokens


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
tokens = AccessTokens()
#: The one CSRF mechanism of the app's HTML forms; the JSON APIs and git are
#: exempted in ``create_app``, as they never read a cookie-authenticated form.
csrf = CSRFProtect()

# Models subclass ``Model``: it is ``db.Model`` at run time, and a class mypy can see.
if TYPE_CHECKING:
    Model = Base
else:
    Model = db.Model
