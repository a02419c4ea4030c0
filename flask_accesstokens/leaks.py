"""Leak response: secret-scanning reports and public revocation revoke the
tokens they name at once, and canaries raise the alarm instead."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from . import signals
from . import tokenformat
from .models import AccessToken
from .models import LEAK_URL_MAX_LENGTH
from .models import TokenSecret
from .servicebase import resource_of
from .servicebase import ServiceBase

log = logging.getLogger("flask_accesstokens")


@dataclass
class LeakOutcome:
    """What one leak report did: whether this app issued each reported
    token (in order), and the signals still to send (:meth:`TokenService.announce`)."""

    provider: str
    client: str | None
    issued: list[bool]
    #: (token id, reported URL) of each token this report revoked.
    leaked: list[tuple[str, str | None]]
    #: Ids of the armed canaries it named.
    tripped: list[str]


class LeakResponse(ServiceBase):
    """The leak-response operations of :class:`~flask_accesstokens.TokenService`."""

    def trip_canary(self, token_id: str, client: str | None, uses: int = 1) -> AccessToken | None:
        """A canary was presented: send :data:`~flask_accesstokens.canary_tripped`
        and, unless ``uses`` is 0, write one audit event and one WARNING line
        for ``uses`` uses (the request path folds a flood of uses into one
        per interval). The request path calls it after its answer is sent.
        None (and no alarm) unless ``token_id`` is an armed canary: a revoked
        one is disarmed."""
        token = self.get(token_id)
        if token is None or not token.canary or token.revoked_at is not None:
            return None
        if uses:
            detail = "presented" if uses == 1 else f"presented {uses} times"
            self._audit("canary_tripped", token, None, detail, client, count=uses)
            self._commit()
            self._alarm(token, client, uses)
        else:
            signals.canary_tripped.send(self.app, token=token, client=client)
        return token

    def report_leaks(
        self,
        provider: str,
        reported: Sequence[tuple[str, str | None]],
        *,
        client: str | None,
        revoked_by: str,
    ) -> LeakOutcome:
        """Revoke every token of this app among ``reported`` (token string,
        URL where it was found), at once and in one transaction; a canary
        stays armed and is audited as tripped by ``client``. Returns whether
        each was issued here (live, revoked, expired or rotated out), for the
        answer, and the signals to send with :meth:`announce`.

        Garbage is cheap: the format and checksum are checked first, then one
        lookup per candidate. Reporting a token twice changes nothing more.
        """
        outcome = LeakOutcome(provider, client, [], [], [])
        revoked: set[str] = set()
        for secret, url in reported:
            token = self.find_by_secret(secret)
            outcome.issued.append(token is not None)
            if token is None or token.id in revoked or token.id in outcome.tripped:
                continue
            if token.canary:
                if token.revoked_at is None:
                    detail = f"reported by {provider}"
                    self._audit("canary_tripped", token, actor=None, detail=detail, client=client)
                    outcome.tripped.append(token.id)
                continue
            if token.revoked_at is not None:
                continue  # revoked before; the first revocation's record stays
            url = None if url is None else url[:LEAK_URL_MAX_LENGTH]
            token.leak_provider = provider
            token.leak_url = url
            self._revoke(token, revoked_by, f"leaked: {provider}")
            revoked.add(token.id)
            outcome.leaked.append((token.id, url))
        # Committed whether or not anything changed: the work done does not
        # depend on which tokens existed more than it must.
        self._commit()
        return outcome

    def announce(self, outcome: LeakOutcome) -> None:
        """Send the signals of a :meth:`report_leaks`, in an app context.
        Apart from it so public revocation can send them after its answer."""
        for token_id, url in outcome.leaked:
            token = self.get(token_id)
            if token is not None:
                log.warning(
                    "Access token %s was reported leaked by %s and revoked",
                    token.id,
                    outcome.provider,
                )
                signals.token_leaked.send(self.app, token=token, provider=outcome.provider, url=url)
        for token_id in outcome.tripped:
            token = self.get(token_id)
            if token is not None:
                self._alarm(token, outcome.client)

    def find_by_secret(self, secret: object) -> AccessToken | None:
        """The token a secret (current or rotated out) belongs to, or None.
        Malformed strings cost no query; the digest is compared in constant
        time."""
        if not isinstance(secret, str) or not tokenformat.is_well_formed(
            secret, self.settings.token_prefix
        ):
            return None
        candidates = self.state.digester.candidates(secret)
        found = self.session.execute(
            sa.select(AccessToken, TokenSecret.digest)
            .join(TokenSecret, TokenSecret.token_id == AccessToken.id)
            .where(TokenSecret.digest.in_(candidates))
            .limit(1)
        ).first()
        if found is None or not any(hmac.compare_digest(found[1], c) for c in candidates):
            return None
        token: AccessToken = found[0]
        return token

    def _alarm(self, token: AccessToken, client: str | None, uses: int = 1) -> None:
        log.warning(
            "Canary access token %s (%r) on %s was used by %s%s",
            token.id,
            token.name,
            resource_of(token),
            client,
            "" if uses == 1 else f" ({uses} uses since the last alarm)",
        )
        signals.canary_tripped.send(self.app, token=token, client=client)
