#!/usr/bin/env bash
# Usage: scripts/with_postgres.sh CMD [ARGS...]
#
# Starts a throwaway PostgreSQL server (temp data dir, 127.0.0.1 only, random
# free port, fsync off), runs CMD with
#     CXDASH_TEST_PG_URL=postgresql+psycopg://cxdash@127.0.0.1:PORT/cxdash
# exported, then stops the server and deletes its data dir -- also when CMD
# fails or the script is interrupted.  Exits with CMD's exit code.
#
# When no PostgreSQL server binaries are installed, prints one line saying the
# PostgreSQL tests will be skipped and runs CMD without the variable (tests
# skip themselves when CXDASH_TEST_PG_URL is unset).
#
# Works as root (server commands run as the `postgres` user via runuser,
# since PostgreSQL refuses to run as root) and as an ordinary user.
#
# Optional environment:
#   CXDASH_PG_BINDIR        directory holding initdb/pg_ctl/postgres (overrides discovery)
#   CXDASH_PG_START_TIMEOUT seconds to wait for the server to accept connections (default 60)
set -euo pipefail

me="with_postgres"
log() { printf '%s: %s\n' "$me" "$*" >&2; }

if [ "$#" -eq 0 ]; then
    echo "usage: $0 CMD [ARGS...]" >&2
    exit 2
fi

# --- find the server binaries ---------------------------------------------
has_server() { [ -n "$1" ] && [ -x "$1/initdb" ] && [ -x "$1/pg_ctl" ] && [ -x "$1/postgres" ]; }

find_bindir() {
    local d
    if [ -n "${CXDASH_PG_BINDIR:-}" ]; then
        has_server "$CXDASH_PG_BINDIR" && { echo "$CXDASH_PG_BINDIR"; return 0; }
        log "CXDASH_PG_BINDIR=$CXDASH_PG_BINDIR has no initdb/pg_ctl/postgres"
        return 1
    fi
    if command -v pg_config >/dev/null 2>&1; then
        d="$(pg_config --bindir 2>/dev/null || true)"
        has_server "$d" && { echo "$d"; return 0; }
    fi
    # Debian/Ubuntu layout: newest major version first.
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5 -V -r); do
        has_server "$d" && { echo "$d"; return 0; }
    done
    # Other distros / Homebrew: binaries on PATH.
    if command -v initdb >/dev/null 2>&1; then
        d="$(dirname "$(command -v initdb)")"
        has_server "$d" && { echo "$d"; return 0; }
    fi
    return 1
}

if ! BINDIR="$(find_bindir)"; then
    if [ -n "${CXDASH_TEST_PG_URL:-}" ]; then
        log "no PostgreSQL server binaries found; using the CXDASH_TEST_PG_URL already set in the environment."
    else
        log "no PostgreSQL server binaries found (no initdb/pg_ctl/postgres via pg_config, /usr/lib/postgresql/*/bin or PATH): the PostgreSQL tests will be skipped (install the 'postgresql' package to run them)."
    fi
    exec "$@"
fi

# --- who runs the server ----------------------------------------------------
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
    pg_user=postgres
    id -u "$pg_user" >/dev/null 2>&1 || pg_user=nobody
    command -v runuser >/dev/null 2>&1 || { log "running as root but 'runuser' is missing; cannot drop privileges for PostgreSQL"; exit 1; }
    as_pg=(runuser -u "$pg_user" --)
fi

# --- temp dir + cleanup -------------------------------------------------------
if [ "$(id -u)" -eq 0 ]; then
    PGTMP="$(mktemp -d /tmp/cxdash-pg.XXXXXX)"   # /tmp: traversable by $pg_user
else
    PGTMP="$(mktemp -d "${TMPDIR:-/tmp}/cxdash-pg.XXXXXX")"
fi
PGDATA_DIR="$PGTMP/data"
PGSOCK_DIR="$PGTMP/sock"
PGLOG="$PGTMP/server.log"
server_started=0

# Run a server-side command as the right user, from inside the temp dir (the
# caller's cwd may be unreadable for the postgres user).
pg_run() { (cd "$PGTMP" && "${as_pg[@]}" "$@"); }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    local t_stop
    t_stop=$(date +%s.%N)
    if [ "$server_started" -eq 1 ] && [ -f "$PGDATA_DIR/postmaster.pid" ]; then
        if ! pg_run "$BINDIR/pg_ctl" -D "$PGDATA_DIR" -m immediate -w -t 20 stop >/dev/null 2>&1; then
            # Last resort: kill the postmaster directly.
            local pid
            pid="$(head -n1 "$PGDATA_DIR/postmaster.pid" 2>/dev/null || true)"
            if [ -n "$pid" ]; then
                kill -QUIT "$pid" 2>/dev/null || true
                sleep 1
                kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
    fi
    rm -rf "$PGTMP"
    if [ "$server_started" -eq 1 ]; then
        log "PostgreSQL stopped and $PGTMP removed in $(awk -v a="$t_stop" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s (exit code $rc)"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

if [ "${#as_pg[@]}" -gt 0 ]; then
    chown "$pg_user:" "$PGTMP"
fi
chmod 700 "$PGTMP"

free_port() {
    local py
    for py in python3 python; do
        if command -v "$py" >/dev/null 2>&1; then
            "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()' && return 0
        fi
    done
    echo $((20000 + RANDOM % 30000))
}

# --- initdb -------------------------------------------------------------------
t0=$(date +%s.%N)
pg_run mkdir -p "$PGSOCK_DIR"
if ! pg_run "$BINDIR/initdb" -D "$PGDATA_DIR" -A trust -U cxdash \
        --encoding=UTF8 --locale=C --no-sync >"$PGTMP/initdb.log" 2>&1; then
    log "initdb failed:"
    cat "$PGTMP/initdb.log" >&2
    exit 1
fi

# --- start (retry a couple of times in case the chosen port got taken) ------
timeout_s="${CXDASH_PG_START_TIMEOUT:-60}"
for attempt in 1 2 3; do
    PORT="$(free_port)"
    # Written by us (root or owner) into the postgres-owned conf; appending keeps ownership.
    cat >>"$PGDATA_DIR/postgresql.conf" <<EOF

# --- cxdash throwaway test server (attempt $attempt) ---
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$PGSOCK_DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 32MB
max_connections = 100
logging_collector = off
EOF
    server_started=1
    if pg_run "$BINDIR/pg_ctl" -D "$PGDATA_DIR" -l "$PGLOG" -w -t "$timeout_s" start >/dev/null 2>&1; then
        break
    fi
    if grep -q "could not bind\|Address already in use" "$PGLOG" 2>/dev/null && [ "$attempt" -lt 3 ]; then
        log "port $PORT was taken, retrying with another port"
        continue
    fi
    log "PostgreSQL server failed to start within ${timeout_s}s (bindir $BINDIR); server log:"
    cat "$PGLOG" >&2 2>/dev/null || true
    exit 1
done

# Bounded readiness check over TCP (pg_ctl -w already waited; this confirms TCP).
ready=0
for _ in $(seq 1 $((timeout_s * 10))); do
    if "$BINDIR/pg_isready" -q -h 127.0.0.1 -p "$PORT" -U cxdash -d postgres -t 1; then
        ready=1
        break
    fi
    sleep 0.1
done
if [ "$ready" -ne 1 ]; then
    log "PostgreSQL on 127.0.0.1:$PORT not ready after ${timeout_s}s; server log:"
    cat "$PGLOG" >&2 2>/dev/null || true
    exit 1
fi

if ! pg_run "$BINDIR/createdb" -h 127.0.0.1 -p "$PORT" -U cxdash cxdash; then
    log "createdb cxdash failed; server log:"
    cat "$PGLOG" >&2 2>/dev/null || true
    exit 1
fi
t1=$(date +%s.%N)

export CXDASH_TEST_PG_URL="postgresql+psycopg://cxdash@127.0.0.1:${PORT}/cxdash"
log "PostgreSQL $("$BINDIR/postgres" --version | awk '{print $3}') ready on 127.0.0.1:$PORT in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')s; CXDASH_TEST_PG_URL=$CXDASH_TEST_PG_URL"

# --- run the command ------------------------------------------------------------
set +e
"$@"
rc=$?
set -e
exit "$rc"
