# shellcheck shell=bash
# Sourced by scripts/test, scripts/demo and .ci/run: makes sure a PostgreSQL server that
# accepts `postgres` without a password is reachable, and exports BASE_DATABASE_URL.
#
# Order: $DATABASE_URL if set; else 127.0.0.1:5432 (the usual local server, started with
# pg_ctlcluster if installed but stopped); else a throwaway cluster on 127.0.0.1:55432
# under target/pgdata (initdb from /usr/lib/postgresql/*/bin, installing the Debian
# package first when nothing is there and we may).

pg_port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pg_trusts_postgres() {
    local port=$1
    if command -v psql >/dev/null 2>&1; then
        PGCONNECT_TIMEOUT=3 psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1
    else
        pg_port_open "$port"
    fi
}

pg_bin_dir() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

pg_as_postgres() {
    if [ "$(id -u)" = 0 ]; then
        if command -v runuser >/dev/null 2>&1; then runuser -u postgres -- "$@"; else su postgres -s /bin/sh -c "$(printf '%q ' "$@")"; fi
    else
        "$@"
    fi
}

ensure_postgres() {
    if [ -n "${DATABASE_URL:-}" ]; then
        export BASE_DATABASE_URL="$DATABASE_URL"
        return 0
    fi
    if pg_trusts_postgres 5432; then
        export BASE_DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
        return 0
    fi
    if ! pg_port_open 5432 && command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
        local version
        version=$(ls /etc/postgresql | sort -V | tail -n 1)
        echo "postgres: starting the local cluster $version/main" >&2
        pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
        for _ in $(seq 1 30); do pg_trusts_postgres 5432 && break; sleep 0.5; done
        if pg_trusts_postgres 5432; then
            export BASE_DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
            return 0
        fi
    fi

    # A throwaway cluster of our own.
    local port=55432
    if pg_trusts_postgres "$port"; then
        export BASE_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
        return 0
    fi
    local bin
    bin=$(pg_bin_dir)
    if [ -z "$bin" ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "postgres: installing PostgreSQL from Debian's packages" >&2
            apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
            bin=$(pg_bin_dir)
        fi
        if [ -z "$bin" ]; then
            echo "postgres: no server answers and none can be installed; set DATABASE_URL" >&2
            return 1
        fi
    fi
    local root data
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    data="$root/target/pgdata"
    if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
        useradd --system --home-dir /var/lib/postgresql --shell /bin/sh postgres
    fi
    mkdir -p "$root/target"
    if [ ! -f "$data/PG_VERSION" ]; then
        echo "postgres: initdb a throwaway cluster in $data" >&2
        rm -rf "$data"
        mkdir -p "$data"
        [ "$(id -u)" = 0 ] && chown postgres "$data"
        pg_as_postgres "$bin/initdb" -D "$data" -U postgres --auth=trust >/dev/null
    fi
    [ "$(id -u)" = 0 ] && chown -R postgres "$data"
    pg_as_postgres "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w \
        -o "-p $port -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >/dev/null
    for _ in $(seq 1 30); do pg_port_open "$port" && break; sleep 0.5; done
    export BASE_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
}
