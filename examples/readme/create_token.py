from app import app
from app import tokens

with app.app_context():
    new = tokens.create_token(
        name="CI",
        workspace="acme",
        repository="api",
        scopes=["repository:write"],
        created_by="alice",
    )
print(new.secret)  # bbat_...: the only time it exists outside the client
print(new.token.id)  # public: what revoking it takes
