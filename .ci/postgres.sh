#!/usr/bin/env bash
# A throwaway PostgreSQL for the test suite, on loopback only.
#
#   eval "$(bash .ci/postgres.sh)"        # start (idempotent), export the URL
#   bash .ci/postgres.sh stop              # stop it
#
# Installs PostgreSQL from Debian packages when it is missing, initialises a
# cluster in $ACCESSTOKENS_PG_DIR (default /tmp/accesstokens-pg-$PGPORT), starts
# it on 127.0.0.1:$PGPORT (default 5433) with durability turned off (it holds
# nothing worth keeping), and creates the role and database `accesstokens`.
# Only `export` lines go to stdout; progress goes to stderr.
set -euo pipefail

PGPORT="${PGPORT:-5433}"
DATADIR="${ACCESSTOKENS_PG_DIR:-/tmp/accesstokens-pg-$PGPORT}"
ROLE=accesstokens
PASSWORD=accesstokens
DATABASE=accesstokens

say() { echo "postgres.sh: $*" >&2; }

find_bindir() {
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            echo "$dir"
            return 0
        fi
    done
    if command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
        return 0
    fi
    return 1
}

BINDIR="$(find_bindir || true)"
if [ -z "$BINDIR" ]; then
    if [ "$(id -u)" != 0 ]; then
        say "PostgreSQL is not installed; run as root, or: apt-get install postgresql"
        exit 1
    fi
    say "installing PostgreSQL from Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    BINDIR="$(find_bindir)"
fi

# As root, the server runs as the `postgres` system user the package creates.
if [ "$(id -u)" = 0 ]; then
    as_owner() { runuser -u postgres -- "$@"; }
else
    as_owner() { "$@"; }
fi

pg_ctl_() { as_owner "$BINDIR/pg_ctl" -D "$DATADIR" "$@"; }

if [ "${1:-start}" = stop ]; then
    if [ -f "$DATADIR/postmaster.pid" ]; then
        pg_ctl_ stop -m fast -w >&2
    fi
    exit 0
fi

if [ ! -f "$DATADIR/PG_VERSION" ]; then
    say "initialising a cluster in $DATADIR"
    mkdir -p "$DATADIR"
    if [ "$(id -u)" = 0 ]; then
        chown postgres:postgres "$DATADIR"
    fi
    chmod 700 "$DATADIR"
    as_owner "$BINDIR/initdb" -D "$DATADIR" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    cat >>"$DATADIR/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$DATADIR'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
fi

if ! pg_ctl_ status >/dev/null 2>&1; then
    say "starting PostgreSQL on 127.0.0.1:$PGPORT"
    pg_ctl_ start -w -t 60 -l "$DATADIR/server.log" >&2
fi

psql_() { as_owner "$BINDIR/psql" -h "$DATADIR" -p "$PGPORT" -U postgres -X -q -v ON_ERROR_STOP=1 "$@"; }

if [ "$(psql_ -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != 1 ]; then
    psql_ -c "CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD'" >&2
fi
if [ "$(psql_ -tAc "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" != 1 ]; then
    psql_ -c "CREATE DATABASE $DATABASE OWNER $ROLE" >&2
fi

URL="postgresql+psycopg://$ROLE:$PASSWORD@127.0.0.1:$PGPORT/$DATABASE"
echo "export ACCESSTOKENS_TEST_POSTGRESQL_URL='$URL'"
echo "export ACCESSTOKENS_TEST_POSTGRESQL_DATADIR='$DATADIR'"
say "ready: $URL"
