from app import app
from app import tokens

with app.app_context():
    new = tokens.create_token(
        name="CI",
        workspace="acme",
        repository="api",
        scopes=["repository"],
        created_by="alice",
    )
    print(new.secret)
    print(new.token.id)
