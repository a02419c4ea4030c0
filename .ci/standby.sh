#!/usr/bin/env bash
# A throwaway PostgreSQL primary with a synchronous hot standby, on loopback,
# for the tests of ACCESSTOKENS_READ_DATABASE_URI (tests/test_standby.py).
#
#   eval "$(bash .ci/standby.sh)"     # start both (idempotent), export the URLs
#   bash .ci/standby.sh stop           # stop both
#
# The primary is a cluster of .ci/postgres.sh on $PRIMARY_PORT (default 5434);
# the standby is made from it with pg_basebackup and streams on $STANDBY_PORT
# (default 5435) as application_name `accesstokens_standby`, the one
# synchronous standby, with synchronous_commit = remote_apply. The test role
# may read the replication views (pg_read_all_stats); a superuser URL lets
# tests change the replication settings. Only `export` lines go to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

PRIMARY_PORT="${PRIMARY_PORT:-5434}"
STANDBY_PORT="${STANDBY_PORT:-5435}"
PRIMARY_DIR="/tmp/accesstokens-pg-$PRIMARY_PORT"
STANDBY_DIR="/tmp/accesstokens-pg-$STANDBY_PORT"
NAME=accesstokens_standby
ADMIN=accesstokens_admin
REPLICA=accesstokens_replica
PASSWORD=accesstokens

say() { echo "standby.sh: $*" >&2; }

if [ "$(id -u)" = 0 ]; then
    as_owner() { runuser -u postgres -- "$@"; }
else
    as_owner() { "$@"; }
fi

if [ "${1:-start}" = stop ]; then
    # The standby first: a primary waiting for it would not stop cleanly.
    for dir in "$STANDBY_DIR" "$PRIMARY_DIR"; do
        if [ -f "$dir/postmaster.pid" ]; then
            bindir="$(ls -d /usr/lib/postgresql/*/bin | sort -V -r | head -1)"
            as_owner "$bindir/pg_ctl" -D "$dir" stop -m fast -w >&2 || true
        fi
    done
    exit 0
fi

# The primary, as the suite's own cluster is made (installing PostgreSQL if needed).
eval "$(PGPORT="$PRIMARY_PORT" ACCESSTOKENS_PG_DIR="$PRIMARY_DIR" bash .ci/postgres.sh)"
BINDIR="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r | head -1)"
[ -x "$BINDIR/pg_basebackup" ] || BINDIR="$(dirname "$(command -v pg_basebackup)")"
psql_() { as_owner "$BINDIR/psql" -h "$PRIMARY_DIR" -p "$PRIMARY_PORT" -U postgres -X -q -v ON_ERROR_STOP=1 "$@"; }

role() {  # name, attributes
    if [ "$(psql_ -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$1'")" != 1 ]; then
        psql_ -c "CREATE ROLE $1 LOGIN $2 PASSWORD '$PASSWORD'" >&2
    fi
}
role "$REPLICA" REPLICATION
role "$ADMIN" SUPERUSER
psql_ -c "GRANT pg_read_all_stats TO accesstokens" >&2

system_id() { as_owner "$BINDIR/pg_controldata" "$1" | awk -F': *' '/system identifier/ {print $2}'; }
if [ -f "$STANDBY_DIR/PG_VERSION" ] && [ "$(system_id "$STANDBY_DIR")" != "$(system_id "$PRIMARY_DIR")" ]; then
    say "the standby in $STANDBY_DIR belongs to another primary: made again"
    as_owner "$BINDIR/pg_ctl" -D "$STANDBY_DIR" stop -m immediate -w >&2 2>/dev/null || true
    rm -rf "$STANDBY_DIR"
fi

if [ ! -f "$STANDBY_DIR/PG_VERSION" ]; then
    say "making the standby in $STANDBY_DIR with pg_basebackup"
    mkdir -p "$STANDBY_DIR"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$STANDBY_DIR"
    chmod 700 "$STANDBY_DIR"
    as_owner env PGPASSWORD="$PASSWORD" "$BINDIR/pg_basebackup" -h 127.0.0.1 -p "$PRIMARY_PORT" \
        -U "$REPLICA" -D "$STANDBY_DIR" -X stream -R -c fast >&2
    cat >>"$STANDBY_DIR/postgresql.auto.conf" <<EOF
port = $STANDBY_PORT
unix_socket_directories = '$STANDBY_DIR'
hot_standby = on
primary_conninfo = 'host=127.0.0.1 port=$PRIMARY_PORT user=$REPLICA password=$PASSWORD application_name=$NAME'
EOF
fi

if ! as_owner "$BINDIR/pg_ctl" -D "$STANDBY_DIR" status >/dev/null 2>&1; then
    say "starting the standby on 127.0.0.1:$STANDBY_PORT"
    as_owner "$BINDIR/pg_ctl" -D "$STANDBY_DIR" start -w -t 60 -l "$STANDBY_DIR/server.log" >&2
fi

# Synchronous, applied before a commit returns; set on every start, since a
# test may have changed them.
psql_ -c "ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 ($NAME)'" >&2
psql_ -c "ALTER SYSTEM SET synchronous_commit = 'remote_apply'" >&2
psql_ -c "SELECT pg_reload_conf()" >/dev/null
for _ in $(seq 1 100); do
    state="$(psql_ -tAc "SELECT sync_state FROM pg_stat_replication WHERE application_name = '$NAME'")"
    [ "$state" = sync ] && break
    sleep 0.2
done
[ "$state" = sync ] || { say "the standby is not synchronous (${state:-absent})"; exit 1; }

echo "export ACCESSTOKENS_TEST_PRIMARY_URL='postgresql+psycopg://accesstokens:accesstokens@127.0.0.1:$PRIMARY_PORT/accesstokens'"
echo "export ACCESSTOKENS_TEST_STANDBY_URL='postgresql+psycopg://accesstokens:accesstokens@127.0.0.1:$STANDBY_PORT/accesstokens'"
echo "export ACCESSTOKENS_TEST_PRIMARY_ADMIN_URL='postgresql+psycopg://$ADMIN:$PASSWORD@127.0.0.1:$PRIMARY_PORT/accesstokens'"
echo "export ACCESSTOKENS_TEST_STANDBY_ADMIN_URL='postgresql+psycopg://$ADMIN:$PASSWORD@127.0.0.1:$STANDBY_PORT/accesstokens'"
say "ready: primary 127.0.0.1:$PRIMARY_PORT, synchronous standby 127.0.0.1:$STANDBY_PORT"
