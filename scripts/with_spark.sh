#!/usr/bin/env bash
# Usage: scripts/with_spark.sh CMD [ARGS...]
#
# Starts a throwaway Apache Spark SQL Thrift server (HiveThriftServer2) on a
# `local-cluster` master -- a real cluster on this machine: a master, two
# worker JVMs and their executor JVMs -- bound to 127.0.0.1 on a free port,
# with its warehouse and Derby metastore in a temp dir, then runs CMD with
#     CXDASH_ANALYTICS_URL=sparkthrift://127.0.0.1:PORT/default
# exported (cxdash/store/spark.py registers the `sparkthrift` scheme) and
#     CXDASH_SPARK_STAGING=<a directory the server reads, for Parquet bulk loads>
# and stops
# the server and deletes the temp dir -- also when CMD fails or the script is
# interrupted. Exits with CMD's exit code.
#
# Spark comes from the `pyspark` wheel pinned in requirements-spark.txt, installed
# on first use into ~/.cache/cxdash/pyspark-VERSION (not the app's venv; it ships
# bin/spark-submit and the Thrift server and Hive jars). Java 17+ is needed: when `java` is missing
# and we are root (or have password-less sudo), openjdk-17-jre-headless is
# installed from Debian's packages; otherwise the script prints one line and
# runs CMD without the variable (the Spark tests skip themselves).
#
# Optional environment:
#   CXDASH_PYTHON              python with PyHive, also used to pip-install pyspark (default: CMD's first word
#                              when it is a python, else .venv/bin/python, then python3)
#   CXDASH_SPARK_HOME          an existing Spark (or pyspark) directory to use instead
#   CXDASH_SPARK_DIR           where to pip-install pyspark (default ~/.cache/cxdash/pyspark-VERSION)
#   CXDASH_SPARK_MASTER        Spark master (default 'local-cluster[2,1,1024]': 2 workers x 1 core x 1 GiB)
#   CXDASH_SPARK_START_TIMEOUT seconds to wait for the server to answer (default 180)
#   CXDASH_SPARK_KEEP_LOGS     non-empty: copy the server log to ./spark-thrift.log on exit
#   CXDASH_SPARK_BACKGROUND    non-empty: run CMD at once, while the server starts; CMD finds
#                              "ready" or "failed" in $CXDASH_SPARK_READY_FILE once that is known
set -euo pipefail

me="with_spark"
log() { printf '%s: %s\n' "$me" "$*" >&2; }

if [ "$#" -eq 0 ]; then
    echo "usage: $0 CMD [ARGS...]" >&2
    exit 2
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# --- python + Spark -------------------------------------------------------------------
# Spark comes from the pyspark wheel (bin/spark-submit plus every jar, the Thrift server's
# included), installed with `pip --target` into its own directory rather than the app's venv:
# with pyspark importable, pandera imports pyspark.pandas on every `import pandera.pandas`
# (slower, and a FutureWarning about pandas 3). The test process itself needs only PyHive.
PY="${CXDASH_PYTHON:-}"
if [ -z "$PY" ] && [ -n "${1:-}" ] && [[ "$(basename "$1")" == python* ]] && [ -x "$1" ]; then
    PY="$1"  # the command is a Python (make test-spark runs .venv/bin/python -m pytest): use it
fi
if [ -z "$PY" ]; then
    for cand in "$here/.venv/bin/python" "$(command -v python3 || true)"; do
        if [ -n "$cand" ] && [ -x "$cand" ]; then PY="$cand"; break; fi
    done
fi
spark_pin="$(grep -E '^pyspark==' "$here/requirements-spark.txt" | head -n1)"
spark_dir="${CXDASH_SPARK_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cxdash/${spark_pin/==/-}}"
has_spark() { [ -n "$1" ] && [ -x "$1/bin/spark-submit" ] && ls "$1"/jars/spark-hive-thriftserver_*.jar >/dev/null 2>&1; }
SPARK_HOME_DIR="${CXDASH_SPARK_HOME:-}"
if [ -n "$SPARK_HOME_DIR" ] && ! has_spark "$SPARK_HOME_DIR"; then
    log "CXDASH_SPARK_HOME=$SPARK_HOME_DIR has no bin/spark-submit or Thrift server jar"
    exit 1
fi
if [ -z "$SPARK_HOME_DIR" ]; then
    SPARK_HOME_DIR="$spark_dir/pyspark"
    if ! has_spark "$SPARK_HOME_DIR"; then
        log "installing $spark_pin into $spark_dir (once; about 500 MB)"
        t_pip=$(date +%s)
        if ! "$PY" -m pip install -q --no-deps --upgrade --target "$spark_dir" "$spark_pin" >&2; then
            log "could not install $spark_pin: the Spark tests will be skipped."
            exec "$@"
        fi
        log "$spark_pin installed in $(($(date +%s) - t_pip))s"
    fi
fi
if ! "$PY" -c 'import pyhive.hive' 2>/dev/null; then
    log "PyHive is not installed for $PY (pip install -r requirements.txt): the Spark tests will be skipped."
    exec "$@"
fi

# --- java ------------------------------------------------------------------------
java_ok() { command -v java >/dev/null 2>&1 && java -version >/dev/null 2>&1; }
if ! java_ok; then
    sudo_cmd=()
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo_cmd=(sudo -n)
    fi
    if { [ "$(id -u)" -eq 0 ] || [ "${#sudo_cmd[@]}" -gt 0 ]; } && command -v apt-get >/dev/null 2>&1; then
        log "installing openjdk-17-jre-headless (java is missing)"
        t_java=$(date +%s)
        # man pages are excluded on slim images, and the JRE's postinst wants the directory.
        "${sudo_cmd[@]}" mkdir -p /usr/share/man/man1
        "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            openjdk-17-jre-headless >/dev/null
        log "java installed in $(($(date +%s) - t_java))s"
    fi
fi
if ! java_ok; then
    log "no java (and could not install openjdk-17-jre-headless): the Spark tests will be skipped."
    exec "$@"
fi
if [ -z "${JAVA_HOME:-}" ]; then
    JAVA_HOME="$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")"
    export JAVA_HOME
fi

# --- temp dir + cleanup -------------------------------------------------------------
SPTMP="$(mktemp -d "${TMPDIR:-/tmp}/cxdash-spark.XXXXXX")"
SPLOG="$SPTMP/server.log"
server_pid=""
waiter_pid=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    local t_stop
    t_stop=$(date +%s.%N)
    [ -n "$waiter_pid" ] && kill "$waiter_pid" 2>/dev/null || true
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        # The driver JVM (spark-submit execs it) leads its own process group (setsid below) and
        # holds local-cluster's master and workers; on TERM it stops its executors itself. Then
        # KILL whatever is left in the group (executor JVMs of a driver that hung).
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 1 150); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$server_pid" 2>/dev/null || true
    fi
    if [ -n "${CXDASH_SPARK_KEEP_LOGS:-}" ] && [ -f "$SPLOG" ]; then
        cp "$SPLOG" ./spark-thrift.log 2>/dev/null || true
    fi
    rm -rf "$SPTMP"
    if [ -n "$server_pid" ]; then
        log "Spark stopped and $SPTMP removed in $(awk -v a="$t_stop" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s (exit code $rc)"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# --- start ------------------------------------------------------------------------------
master="${CXDASH_SPARK_MASTER:-local-cluster[2,1,1024]}"
timeout_s="${CXDASH_SPARK_START_TIMEOUT:-180}"
PORT="$(free_port)"
UI_PORT="$(free_port)"
mkdir -p "$SPTMP/warehouse" "$SPTMP/scratch" "$SPTMP/work"
t0=$(date +%s.%N)
(
    cd "$SPTMP" # derby.log and metastore_db land here
    export SPARK_HOME="$SPARK_HOME_DIR"
    export SPARK_LOCAL_IP=127.0.0.1
    export SPARK_LOCAL_DIRS="$SPTMP/work"
    export SPARK_WORKER_DIR="$SPTMP/work"
    exec setsid "$SPARK_HOME_DIR/bin/spark-submit" \
        --master "$master" \
        --class org.apache.spark.sql.hive.thriftserver.HiveThriftServer2 \
        --name cxdash-thrift \
        --driver-memory 1g \
        --conf spark.executor.memory=768m \
        --conf spark.driver.host=127.0.0.1 \
        --conf spark.driver.bindAddress=127.0.0.1 \
        --conf spark.ui.port="$UI_PORT" \
        --conf spark.ui.showConsoleProgress=false \
        --conf spark.sql.shuffle.partitions=4 \
        --conf spark.sql.adaptive.enabled=true \
        --conf spark.sql.warehouse.dir="$SPTMP/warehouse" \
        --conf spark.sql.session.timeZone=UTC \
        --conf spark.driver.extraJavaOptions="-Dderby.system.home=$SPTMP -Duser.timezone=UTC" \
        --conf spark.executor.extraJavaOptions="-Duser.timezone=UTC" \
        --conf "spark.hadoop.javax.jdo.option.ConnectionURL=jdbc:derby:;databaseName=$SPTMP/metastore_db;create=true" \
        --conf spark.hadoop.hive.exec.scratchdir="$SPTMP/scratch" \
        --hiveconf hive.server2.thrift.bind.host=127.0.0.1 \
        --hiveconf hive.server2.thrift.port="$PORT" \
        --hiveconf hive.server2.transport.mode=binary \
        spark-internal
) >"$SPLOG" 2>&1 &
server_pid=$!

# Ready when a Thrift session answers a query (the port opens a little before that).
wait_ready() {
    local deadline=$(($(date +%s) + timeout_s))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if ! kill -0 "$server_pid" 2>/dev/null; then
            log "the Spark Thrift server exited while starting; its log:"
            tail -n 60 "$SPLOG" >&2 || true
            return 1
        fi
        if "$PY" - "$PORT" <<'EOF' >/dev/null 2>&1; then
import socket, sys
port = int(sys.argv[1])
socket.create_connection(("127.0.0.1", port), timeout=1).close()
from pyhive import hive
conn = hive.connect(host="127.0.0.1", port=port, username="cxdash")
cur = conn.cursor()
cur.execute("SELECT 1")
assert cur.fetchall() == [(1,)]
conn.close()
EOF
            return 0
        fi
        sleep 0.5
    done
    log "the Spark Thrift server did not answer on 127.0.0.1:$PORT within ${timeout_s}s; its log:"
    tail -n 60 "$SPLOG" >&2 || true
    return 1
}

export CXDASH_ANALYTICS_URL="sparkthrift://cxdash@127.0.0.1:${PORT}/default"
export CXDASH_SPARK_WAREHOUSE="$SPTMP/warehouse"
export CXDASH_SPARK_STAGING="$SPTMP/staging"
mkdir -p "$CXDASH_SPARK_STAGING"
spark_version="$(ls "$SPARK_HOME_DIR"/jars/spark-core_*.jar 2>/dev/null | sed -E 's/.*spark-core_[0-9.]+-(.*)\.jar/\1/' | head -n1)"
ready_msg() {
    log "Spark $spark_version Thrift server ($master) ready on 127.0.0.1:$PORT in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s; CXDASH_ANALYTICS_URL=$CXDASH_ANALYTICS_URL"
}
if [ -n "${CXDASH_SPARK_BACKGROUND:-}" ]; then
    # CMD starts now, while the server starts (30-60 s of JVM start-up it need not wait for); the
    # file says "ready" or "failed" once that is known, and the Spark tests wait for it
    # (tests/spark_support.py).
    export CXDASH_SPARK_READY_FILE="$SPTMP/ready"
    (
        if wait_ready; then
            ready_msg
            echo ready >"$CXDASH_SPARK_READY_FILE.tmp"
        else
            echo failed >"$CXDASH_SPARK_READY_FILE.tmp"
        fi
        mv "$CXDASH_SPARK_READY_FILE.tmp" "$CXDASH_SPARK_READY_FILE"
    ) &
    waiter_pid=$!
    log "starting the Spark Thrift server in the background; CMD runs meanwhile (CXDASH_SPARK_READY_FILE)"
else
    wait_ready || exit 1
    ready_msg
fi

# --- run the command ------------------------------------------------------------
set +e
"$@"
rc=$?
set -e
exit "$rc"
