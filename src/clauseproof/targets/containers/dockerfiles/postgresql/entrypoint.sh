#!/bin/sh
# The official postgres image's entrypoint contract, for Debian's PostgreSQL packages.
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
if [ $# -eq 0 ]; then set -- postgres; fi  # an image built FROM this one with its own ENTRYPOINT has no CMD
if [ "${1#-}" != "$1" ]; then set -- postgres "$@"; fi
if [ "$1" != postgres ]; then exec "$@"; fi
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "${POSTGRES_HOST_AUTH_METHOD:-}" != trust ]; then
        echo "error: database is uninitialized and superuser password is not specified; set POSTGRES_PASSWORD" >&2
        exit 1
    fi
    pwfile=$(mktemp)
    printf '%s\n' "${POSTGRES_PASSWORD:-}" > "$pwfile"
    # shellcheck disable=SC2086
    initdb -D "$PGDATA" --username="$user" --pwfile="$pwfile" ${POSTGRES_INITDB_ARGS:-}
    rm -f "$pwfile"
    printf 'host all all all %s\n' "${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" >> "$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start   # the init server: socket only
    export PGUSER="$user" PGPASSWORD="${POSTGRES_PASSWORD:-}" PGHOST=/var/run/postgresql
    if [ "$db" != postgres ]; then
        psql -v ON_ERROR_STOP=1 -q --dbname postgres --set db="$db" -c 'CREATE DATABASE :"db"'
    fi
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sh) echo "running $f"; . "$f" ;;
            *.sql) echo "running $f"; psql -v ON_ERROR_STOP=1 -q --dbname "$db" -f "$f" ;;
            *.sql.gz) echo "running $f"; gunzip -c "$f" | psql -v ON_ERROR_STOP=1 -q --dbname "$db" ;;
            *) ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop
    unset PGPASSWORD
    echo "PostgreSQL init process complete; ready for start up."
fi
shift
exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
