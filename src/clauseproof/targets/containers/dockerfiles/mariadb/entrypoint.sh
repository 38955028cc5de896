#!/bin/sh
# The official mariadb image's entrypoint contract, for Debian's MariaDB packages.  The server runs with
# --no-defaults (stock settings, as the harness's embedded MariaDB does).
set -eu
datadir=/var/lib/mysql
sock=/run/mysqld/mysqld.sock
if [ $# -eq 0 ]; then set -- mariadbd; fi  # an image built FROM this one with its own ENTRYPOINT has no CMD
if [ "${1#-}" != "$1" ]; then set -- mariadbd "$@"; fi
case "$1" in mariadbd|mysqld) ;; *) exec "$@" ;; esac
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$datadir" /run/mysqld
    chown mysql:mysql "$datadir" /run/mysqld
    exec setpriv --reuid=mysql --regid=mysql --init-groups "$0" "$@"
fi
shift
server() {  # run in the background: exec, so that $! is mariadbd itself
    exec mariadbd --no-defaults --datadir="$datadir" --socket="$sock" --pid-file=/run/mysqld/mysqld.pid \
        --skip-name-resolve --local-infile=1 "$@"
}
root_pw=${MARIADB_ROOT_PASSWORD:-${MYSQL_ROOT_PASSWORD:-}}
empty_ok=${MARIADB_ALLOW_EMPTY_ROOT_PASSWORD:-${MYSQL_ALLOW_EMPTY_PASSWORD:-}}
database=${MARIADB_DATABASE:-${MYSQL_DATABASE:-}}
user=${MARIADB_USER:-${MYSQL_USER:-}}
password=${MARIADB_PASSWORD:-${MYSQL_PASSWORD:-}}
sql_str() { printf "'%s'" "$(printf '%s' "$1" | sed -e "s/\\\\/\\\\\\\\/g" -e "s/'/\\\\'/g")"; }
if [ ! -d "$datadir/mysql" ]; then
    if [ -z "$root_pw" ] && [ -z "$empty_ok" ]; then
        echo "error: database is uninitialized and the root password is not specified;" \
             "set MARIADB_ROOT_PASSWORD (or MYSQL_ROOT_PASSWORD)" >&2
        exit 1
    fi
    mariadb-install-db --no-defaults --datadir="$datadir" --auth-root-authentication-method=normal \
        --skip-test-db --skip-name-resolve > /dev/null
    server --skip-networking &                      # the init server: socket only
    pid=$!
    for _ in $(seq 60); do
        mariadb --no-defaults --socket="$sock" -uroot -e 'SELECT 1' > /dev/null 2>&1 && break
        sleep 0.5
    done
    {
        echo "SET @@SESSION.SQL_LOG_BIN = 0;"
        echo "DELETE FROM mysql.global_priv WHERE User <> 'root' OR Host NOT IN ('localhost');"
        echo "ALTER USER 'root'@'localhost' IDENTIFIED BY $(sql_str "$root_pw");"
        echo "CREATE USER 'root'@'%' IDENTIFIED BY $(sql_str "$root_pw");"
        echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
        if [ -n "$database" ]; then echo "CREATE DATABASE IF NOT EXISTS \`$database\`;"; fi
        if [ -n "$user" ]; then
            echo "CREATE USER $(sql_str "$user")@'%' IDENTIFIED BY $(sql_str "$password");"
            if [ -n "$database" ]; then echo "GRANT ALL ON \`$database\`.* TO $(sql_str "$user")@'%';"; fi
        fi
        echo "FLUSH PRIVILEGES;"
    } | mariadb --no-defaults --socket="$sock" -uroot
    export MYSQL_PWD="$root_pw"
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sh) echo "running $f"; . "$f" ;;
            *.sql) echo "running $f"; mariadb --no-defaults --socket="$sock" -uroot ${database:+"$database"} < "$f" ;;
            *.sql.gz) echo "running $f"; gunzip -c "$f" | mariadb --no-defaults --socket="$sock" -uroot ${database:+"$database"} ;;
            *) ;;
        esac
    done
    unset MYSQL_PWD
    kill "$pid"
    wait "$pid" || true
    echo "MariaDB init process done. Ready for start up."
fi
exec mariadbd --no-defaults --datadir="$datadir" --socket="$sock" --pid-file=/run/mysqld/mysqld.pid \
    --skip-name-resolve --local-infile=1 --bind-address=0.0.0.0 --port=3306 "$@"
