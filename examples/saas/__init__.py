"""A small SaaS protected with Flask-AccessTokens: organizations, their
projects, and the items in each project. Not a code host: it declares its
own resource model and its own scopes (see ``access.py``), and nothing it
shows mentions workspaces, repositories or git.

Run it with ``python -m examples.saas`` (a seeded demo that prints a token
and curl lines) or ``flask --app examples.saas.app run``.
"""
