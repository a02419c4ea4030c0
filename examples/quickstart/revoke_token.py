import sys

from app import app
from app import tokens

token_id = sys.argv[1]  # the id create_token.py printed
with app.app_context():
    tokens.revoke_token(token_id, revoked_by="alice")
