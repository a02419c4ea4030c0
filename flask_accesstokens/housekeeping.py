"""Housekeeping: pruning old tokens and client addresses, and the expiry
warnings cron sends."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from datetime import timedelta

import sqlalchemy as sa

from . import signals
from .models import AccessToken
from .models import as_utc
from .models import TokenNotice
from .models import TokenSecret
from .models import utcnow
from .serialize import parse_datetime
from .servicebase import ServiceBase
from .usagemodels import ResourceUse
from .usagemodels import ScopeUse

log = logging.getLogger("flask_accesstokens")


class Housekeeping(ServiceBase):
    """The housekeeping operations of :class:`~flask_accesstokens.TokenService`."""

    def prune(
        self,
        older_than: timedelta,
        *,
        dry_run: bool = False,
        clients_older_than: timedelta | None = None,
    ) -> list[AccessToken]:
        """Delete tokens revoked or expired more than ``older_than`` ago. The
        audit log keeps their history. Unless ``dry_run``, also forget client
        addresses (recent clients, last-used address) seen longer ago than
        ``clients_older_than`` (default ``ACCESSTOKENS_RECENT_CLIENTS_MAX_AGE``):
        they are personal data.

        .. versionchanged:: 0.2
            Forgets old client addresses too.
        """
        if not dry_run:
            self.prune_clients(clients_older_than)
        cutoff = utcnow() - older_than
        t = AccessToken
        query = sa.select(t).where(
            sa.or_(
                t.revoked_at < cutoff,
                sa.and_(t.revoked_at.is_(None), t.expires_at < cutoff),
            )
        )
        doomed = list(self.session.scalars(query))
        if dry_run or not doomed:
            return doomed
        ids = [token.id for token in doomed]
        for token in doomed:
            self._audit("pruned", token, actor="prune")
            # Detached with what was loaded, so callers can still describe them.
            self.session.expunge(token)
        self.session.execute(sa.delete(TokenSecret).where(TokenSecret.token_id.in_(ids)))
        self.session.execute(sa.delete(TokenNotice).where(TokenNotice.token_id.in_(ids)))
        self.session.execute(sa.delete(ScopeUse).where(ScopeUse.token_id.in_(ids)))
        self.session.execute(sa.delete(ResourceUse).where(ResourceUse.token_id.in_(ids)))
        self.session.execute(sa.delete(AccessToken).where(AccessToken.id.in_(ids)))
        self._commit()
        return doomed

    def prune_clients(self, older_than: timedelta | None = None) -> int:
        """Forget client addresses last seen more than ``older_than`` ago
        (default ``ACCESSTOKENS_RECENT_CLIENTS_MAX_AGE``). Returns how many
        addresses were dropped.

        .. versionadded:: 0.2
        """
        age = self.settings.recent_clients_max_age if older_than is None else older_than
        cutoff = utcnow() - age
        t = AccessToken
        dropped = 0
        query = sa.select(t).where(
            sa.or_(
                t.recent_ips.is_not(None),
                sa.and_(t.last_used_ip.is_not(None), t.last_used_at < cutoff),
            )
        )
        for token in self.session.scalars(query):
            if token.last_used_ip is not None and (
                token.last_used_at is None or token.last_used_at < cutoff
            ):
                token.last_used_ip = None
                dropped += 1
            clients = token.recent_clients
            kept = [c for c in clients if _seen_since(c, cutoff)]
            if len(kept) != len(clients) or (token.recent_ips and not clients):
                dropped += len(clients) - len(kept)
                token.recent_clients_json = json.dumps(kept) if kept else None
                token.recent_ips = " ".join(c["ip"] for c in kept) or None
        self._commit()
        return dropped

    # -- expiry warnings ----------------------------------------------------------------

    def notify_expiring(self, now: datetime | None = None) -> int:
        """Send ``token_expiring`` and ``token_expired`` for tokens with an
        expiry, neither revoked nor canaries: each threshold of
        ``ACCESSTOKENS_EXPIRY_WARNINGS`` at most once (only the smallest when
        several are crossed at once), ``token_expired`` once after expiry
        (and only that for a token already expired when first seen). Each
        notice is a row with a unique (token, kind) key, inserted and
        committed before its signal: overlapping runs (two cron hosts) cannot
        both send it. Returns how many signals were sent.

        .. versionadded:: 0.2
        """
        now = utcnow() if now is None else as_utc(now)
        assert now is not None
        thresholds = self.settings.expiry_warnings
        horizon = now + timedelta(days=max(thresholds, default=0))
        t = AccessToken
        query = (
            sa.select(t)
            .where(t.expires_at.is_not(None), t.expires_at <= horizon, t.revoked_at.is_(None))
            .where(t.canary.is_(False))  # a canary's alarm is its only message
            .order_by(t.expires_at, t.id)
        )
        candidates = list(self.session.scalars(query))
        sent = self._sent_notices([token.id for token in candidates])
        count = 0
        for token in candidates:
            expires_at = token.expires_at
            assert expires_at is not None
            if expires_at <= now:
                kind, days = "expired", None
            else:
                crossed = [d for d in thresholds if expires_at - now <= timedelta(days=d)]
                if not crossed:
                    continue
                days = min(crossed)
                kind = f"expiring:{days}"
            if (token.id, kind) in sent or not self._claim_notice(token.id, kind, now):
                continue
            if days is None:
                signals.token_expired.send(self.app, token=token)
            else:
                signals.token_expiring.send(self.app, token=token, days_left=days)
            count += 1
        return count

    def _sent_notices(self, token_ids: list[str]) -> set[tuple[str, str]]:
        sent: set[tuple[str, str]] = set()
        for start in range(0, len(token_ids), 500):
            chunk = token_ids[start : start + 500]
            rows = self.session.execute(
                sa.select(TokenNotice.token_id, TokenNotice.kind).where(
                    TokenNotice.token_id.in_(chunk)
                )
            )
            sent.update((token_id, kind) for token_id, kind in rows)
        return sent


def _seen_since(client: object, cutoff: datetime) -> bool:
    if not isinstance(client, dict):
        return False
    try:
        return parse_datetime(client.get("last_seen")) >= cutoff
    except ValueError:
        return False
