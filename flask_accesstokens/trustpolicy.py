"""Trust policies and the OIDC exchange: a CI job trades its provider's ID
token for a short-lived token of one resource, and no long-lived secret is
stored in CI.

A policy says which issuer's tokens, carrying which claims (every one
equal), get which scopes on which resource, for how long (at most
:data:`MAX_LIFETIME`). Verifying the ID token is ``oidc.py``'s work; this
module matches it against the policies, remembers it so it cannot be used
twice, and mints an ordinary token through the service's one insert path.
Deleting a policy revokes the live tokens it minted.

Refusals are :class:`~flask_accesstokens.oidc.Refusal` values with a code;
they say why, never which claim a policy would have wanted.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from datetime import datetime
from datetime import timedelta
from typing import Any
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import SQLAlchemyError

from . import signals
from . import tokenformat
from .errors import PlanRestriction
from .errors import TokenValidationError
from .errors import UnknownResource
from .models import AccessToken
from .models import NAME_MAX_LENGTH
from .models import TokenEvent
from .models import utcnow
from .oidc import Issuer
from .oidc import LEEWAY
from .oidc import Refusal
from .oidc import require_pyjwt
from .oidc import VerifiedToken
from .oidc import Verifier
from .resources import Resource
from .servicebase import ServiceBase
from .tokens import NewToken
from .trustmodels import ExchangedIDToken
from .trustmodels import TrustPolicy

#: The longest a minted token may live.
MAX_LIFETIME = timedelta(hours=1)
DEFAULT_LIFETIME = timedelta(minutes=15)
#: Claims a policy may pin; each value a short string, number or boolean.
MAX_CLAIMS = 32
MAX_CLAIM_LENGTH = 1024
#: The claims copied into the audit row of a minted token, where present,
#: beside the policy's own: what the job was.
AUDITED_CLAIMS = (
    "sub",
    "repository",
    "repository_id",
    "project_path",
    "project_id",
    "repositoryUuid",
    "workspaceUuid",
    "ref",
    "sha",
    "workflow",
    "job_workflow_ref",
    "environment",
    "run_id",
    "pipeline_id",
    "pipelineUuid",
    "stepUuid",
)
#: A minted token's name is cut shorter than names may be, so the actor it
#: becomes when it ends itself ("<name> (access token)") fits its columns.
MINTED_NAME_MAX_LENGTH = NAME_MAX_LENGTH - 32
_verifier_lock = threading.Lock()
VERIFIER_KEY = "accesstokens.oidc_verifier"


def check_claims(claims: object) -> dict[str, str | int | bool]:
    """The claims a policy pins: at least one, each a name and a scalar."""
    if not isinstance(claims, Mapping) or not claims:
        raise TokenValidationError(
            "claims", "required: a policy with no claims would trust every token of its issuer"
        )
    if len(claims) > MAX_CLAIMS:
        raise TokenValidationError("claims", f"at most {MAX_CLAIMS}")
    checked: dict[str, str | int | bool] = {}
    for name, value in claims.items():
        if not isinstance(name, str) or not 0 < len(name) <= 64 or not name.isprintable():
            raise TokenValidationError("claims", "claim names are 1-64 printable characters")
        if name in ("iss", "aud", "exp", "iat", "nbf", "jti"):
            raise TokenValidationError("claims", f"{name!r} is checked by the exchange itself")
        if isinstance(value, float) or not isinstance(value, (str, int, bool)):
            raise TokenValidationError("claims", f"{name!r} must be a string, integer or boolean")
        if isinstance(value, str) and (not value or len(value) > MAX_CLAIM_LENGTH):
            raise TokenValidationError(
                "claims", f"{name!r} must be 1-{MAX_CLAIM_LENGTH} characters"
            )
        checked[name] = value
    return checked


def matches(policy_claims: Mapping[str, Any], claims: Mapping[str, Any]) -> bool:
    """Every pinned claim present and equal, of the same JSON type (``"1"``
    is not ``1``, and ``true`` is not ``1``)."""
    for name, wanted in policy_claims.items():
        value = claims.get(name)
        if type(value) is not type(wanted) or value != wanted:
            return False
    return True


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


class TrustPolicies(ServiceBase):
    """Trust policies and the exchange, as part of the token service."""

    if TYPE_CHECKING:  # provided by TokenService (service.py)

        def _insert(
            self, resource: Resource, now: datetime, audit_detail: str | None = ..., **fields: Any
        ) -> NewToken: ...

        def check_plan(self, resource: Resource) -> None: ...

        def check_exists(self, resource: Resource) -> None: ...

    # -- policies -----------------------------------------------------------------

    def create_trust_policy(
        self,
        *,
        resource: Mapping[str, Any] | Resource,
        issuer: str,
        claims: Mapping[str, Any],
        scopes: Iterable[str],
        lifetime: timedelta = DEFAULT_LIFETIME,
        created_by: str | None = None,
    ) -> TrustPolicy:
        """Let ``issuer``'s ID tokens carrying ``claims`` mint tokens of
        ``resource``. Raises :class:`TokenValidationError` (a ValueError
        naming the field), :class:`UnknownResource` or
        :class:`PlanRestriction`, and writes nothing, when anything is wrong.

        .. versionadded:: 0.3
        """
        bound = self.resolve(resource)
        if not isinstance(issuer, str) or issuer not in self.settings.oidc_issuers:
            raise TokenValidationError("issuer", "must name an issuer of ACCESSTOKENS_OIDC_ISSUERS")
        pinned = check_claims(claims)
        if isinstance(scopes, str):
            raise TokenValidationError("scopes", "must be a list of scope names, not a string")
        try:
            granted = self.catalog.validate(bound.type, scopes)
        except ValueError as e:
            raise TokenValidationError("scopes", str(e).removeprefix("scopes: ")) from None
        if not isinstance(lifetime, timedelta) or not timedelta(0) < lifetime <= MAX_LIFETIME:
            raise TokenValidationError("lifetime", "must be more than 0 and at most one hour")
        if lifetime % timedelta(seconds=1):
            raise TokenValidationError("lifetime", "must be whole seconds")
        self.check_plan(bound)
        self.check_exists(bound)
        policy = TrustPolicy(
            id=tokenformat.new_id(),
            type=bound.type,
            resource_key=bound.key,
            issuer=issuer,
            claims_json=json.dumps(pinned, sort_keys=True),
            scopes=granted,
            lifetime_seconds=int(lifetime.total_seconds()),
            created_at=utcnow(),
            created_by=created_by,
        )
        self.session.add(policy)
        self._policy_audit("policy added", policy, created_by)
        self._commit()
        self.session.refresh(policy)
        self.session.expunge(policy)
        return policy

    def get_trust_policy(self, policy_id: str) -> TrustPolicy | None:
        if not isinstance(policy_id, str) or not tokenformat.is_id(policy_id):
            return None
        return self.session.get(TrustPolicy, policy_id)

    def list_trust_policies(self, resource: Mapping[str, Any] | Resource) -> list[TrustPolicy]:
        """The policies of exactly this resource, newest first."""
        bound = self.resolve(resource)
        p = TrustPolicy
        query = sa.select(p).where(p.resource_key == bound.key, p.type == bound.type)
        return list(self.session.scalars(query.order_by(p.created_at.desc(), p.id.desc())))

    def delete_trust_policy(self, policy_id: str, deleted_by: str | None = None) -> bool:
        """Delete a policy and revoke, for every worker, the live tokens it
        minted. False if there was no such policy.

        .. versionadded:: 0.3
        """
        policy = self.get_trust_policy(policy_id)
        if policy is None:
            return False
        t = AccessToken
        minted = list(
            self.session.scalars(
                sa.select(t).where(t.policy_id == policy.id, t.revoked_at.is_(None))
            )
        )
        for token in minted:
            self._revoke(token, deleted_by, "trust policy deleted")
        self._policy_audit("policy removed", policy, deleted_by)
        self.session.delete(policy)
        self._commit()
        for token in minted:
            signals.token_revoked.send(self.app, token=token, actor=deleted_by)
        return True

    def _policy_audit(self, action: str, policy: TrustPolicy, actor: str | None) -> None:
        detail = {
            "policy": policy.id,
            "issuer": policy.issuer,
            "claims": json.loads(policy.claims_json),
            "scopes": list(policy.scopes),
            "lifetime": policy.lifetime_seconds,
        }
        self.session.add(
            TokenEvent(
                at=utcnow(),
                action=action,
                token_id=None,
                actor=actor,
                resource_key=policy.resource_key,
                detail=json.dumps(detail, sort_keys=True),
            )
        )

    # -- the exchange -------------------------------------------------------------------

    def verifier(self) -> Verifier:
        """The app's ID-token verifier with its key caches, made on first use."""
        verifier: Verifier | None = self.app.extensions.get(VERIFIER_KEY)
        if verifier is None:
            with _verifier_lock:
                verifier = self.app.extensions.get(VERIFIER_KEY)
                if verifier is None:
                    require_pyjwt()
                    issuers = {
                        name: Issuer.from_config(name, entry)
                        for name, entry in self.settings.oidc_issuers.items()
                    }
                    verifier = self.app.extensions[VERIFIER_KEY] = Verifier(issuers)
        return verifier

    def exchange(self, id_token: object, scopes: Sequence[str] | None = None) -> NewToken:
        """Mint a token for a CI job's verified ID token, or raise
        :class:`~flask_accesstokens.oidc.Refusal` and mint nothing.

        The token is bound to the matching policy's resource, holds its
        scopes (or the subset asked for) and expires after its lifetime.
        When several policies match, the one pinning the most claims wins,
        then the oldest. The ID token is remembered until it expires, so it
        is exchanged once.

        .. versionadded:: 0.3
        """
        if not self.settings.oidc_issuers:
            raise Refusal("No OIDC issuer is trusted here.")
        verified = self.verifier().verify(id_token)
        policy = self._matching_policy(verified)
        resource = Resource.from_key(policy.type, policy.resource_key)
        granted = self._granted(policy, scopes)
        now = utcnow()
        try:
            self.check_plan(resource)
            self.check_exists(resource)
        except (PlanRestriction, UnknownResource):
            raise Refusal(
                "The trust policy's resource cannot get tokens now.", "no-matching-policy", 400
            ) from None
        self._prune_exchanged(now)
        e = ExchangedIDToken
        if self.session.get(e, verified.replay_key) is not None:
            self.session.rollback()
            raise Refusal("This ID token was exchanged already.", "reused-token")
        # Remembered past its expiry plus the leeway: until no check accepts it.
        remember_until = verified.expires_at + timedelta(seconds=2 * LEEWAY)
        self.session.add(e(key=verified.replay_key, expires_at=remember_until))
        try:
            # Claim the key before anything else: a worker racing with the
            # same ID token waits here for the first one's commit, then fails.
            self.session.flush()
        except IntegrityError:
            self.session.rollback()
            raise Refusal("This ID token was exchanged already.", "reused-token") from None
        lifetime = policy.lifetime
        if self.settings.max_lifetime is not None:
            lifetime = min(lifetime, self.settings.max_lifetime)
        sub = _printable(str(verified.claims.get("sub", "")))
        try:
            return self._insert(
                resource,
                now,
                audit_detail=self._mint_detail(policy, verified),
                name=f"OIDC {verified.issuer.name}: {sub}"[:MINTED_NAME_MAX_LENGTH],
                scopes=granted,
                created_by=f"oidc:{verified.issuer.name}:{sub}"[:255],
                expires_at=now + lifetime,
                policy_id=policy.id,
            )
        except IntegrityError:  # the same ID token, exchanged at the same moment elsewhere
            raise Refusal("This ID token was exchanged already.", "reused-token") from None

    def _prune_exchanged(self, now: datetime) -> None:
        """Forget ID tokens that can no longer be presented, in a
        transaction of its own: a failure here must not refuse the job."""
        e = ExchangedIDToken
        try:
            self.session.execute(sa.delete(e).where(e.expires_at < now))
            self.session.commit()
        except SQLAlchemyError:
            self.session.rollback()

    def _matching_policy(self, verified: VerifiedToken) -> TrustPolicy:
        p = TrustPolicy
        candidates = self.session.scalars(
            sa.select(p).where(p.issuer == verified.issuer.name).order_by(p.created_at, p.id)
        )
        best: TrustPolicy | None = None
        best_size = 0
        for policy in candidates:
            pinned = policy.claims
            if pinned and matches(pinned, verified.claims) and len(pinned) > best_size:
                best, best_size = policy, len(pinned)
        if best is None:
            raise Refusal("No trust policy accepts this ID token.", "no-matching-policy", 400)
        return best

    def _granted(self, policy: TrustPolicy, asked: Sequence[str] | None) -> tuple[str, ...]:
        """The policy's scopes, or the subset asked for: each asked scope held
        by the policy, directly or by implication."""
        if asked is None:
            return tuple(policy.scopes)
        held = self.catalog.closure(policy.scopes)
        if not asked or any(not isinstance(s, str) or s not in held for s in asked):
            raise Refusal(
                "Ask for scopes the trust policy grants, or for none to get them all.",
                "invalid-scopes",
                400,
            )
        try:
            return self.catalog.validate(policy.type, asked)
        except ValueError:
            raise Refusal("These scopes cannot be granted here.", "invalid-scopes", 400) from None

    @staticmethod
    def _mint_detail(policy: TrustPolicy, verified: VerifiedToken) -> str:
        """What the audit row keeps of the job: the policy, and the claims
        that matched plus those that say which run it was."""
        names = [*policy.claims, *(c for c in AUDITED_CLAIMS if c not in policy.claims)]
        claims: dict[str, Any] = {}
        for name in names:
            value = verified.claims.get(name)
            if isinstance(value, str):
                claims[name] = value[:MAX_CLAIM_LENGTH]
            elif isinstance(value, (int, bool)):
                claims[name] = value
        detail = {"oidc": verified.issuer.name, "policy": policy.id, "claims": claims}
        return json.dumps(detail, sort_keys=True)
