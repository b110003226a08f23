#!/usr/bin/env bash
# Fencing tokens across failover and restarts (issue 16), with real servers that the
# tests crash, restart and promote (pytest in pg_test/python/failover):
#   test_promote   primary + pg_basebackup -R -X stream standby (async), the primary
#                  SIGKILLed, pg_ctl promote; then once more to a third timeline
#   test_restarts  SIGKILL of a backend (crash restart), pg_ctl restart -m fast and
#                  -m immediate, SIGKILL of the postmaster
#   test_patroni   (15 only: Debian's Patroni drives Debian's PostgreSQL 15) two Patroni
#                  members on one etcd; the leader's Patroni and PostgreSQL SIGKILLed
#   scripts/failover-tests.sh VERSION [PYTEST-ARGS...]   (VERSION 18 or 15)
# Everything runs under $RUN/failover-pgV and listens on 127.0.0.1, ports
# 27200+V + 20*slot (slots in pg_test/python/failover/conftest.py; etcd: slots 3 and 4),
# and everything still running under that directory is killed on exit.
# FAILOVER_NO_EXTENSION=1 skips the build and the preload (orchestration development
# only: on 15 the fenced calls then fail; on 18 an extension installed before works
# without preloading, in dynamic shared memory).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$ROOT/scripts/server.sh"

suite_version failover "$@"
shift
PORT_BASE=$((27200 + V))
ETCD_PORT=$((PORT_BASE + 60))
ETCD_PEER_PORT=$((PORT_BASE + 80))
ETCD=$DIR/etcd
REPORT=$DIR/report.txt
# The whole pytest run; setup (the build aside) and teardown take a few seconds more.
PYTEST_BUDGET=${FAILOVER_PYTEST_BUDGET:-170}

# Pids of the processes working in a directory under $DIR: postmasters and their
# children (in their data directory), Patroni members, etcd.
pids_under_dir() {
    local p cwd
    for p in /proc/[0-9]*; do
        cwd=$(readlink "$p/cwd" 2>/dev/null) || continue
        case $cwd in "$DIR" | "$DIR"/*) echo "${p#/proc/}" ;; esac
    done | grep -vx -e "$$" -e "$BASHPID" || true
}

cleanup() {
    local f pid left
    # Patroni first: it would start its PostgreSQL again.
    for f in "$DIR"/*/*/patroni.pid "$ETCD/etcd.pid"; do
        [ -f "$f" ] || continue
        pid=$(cat "$f" 2>/dev/null) || continue
        kill -KILL "$pid" 2>/dev/null || true
    done
    for _ in $(seq 1 100); do
        left=$(pids_under_dir)
        [ -n "$left" ] || return 0
        # shellcheck disable=SC2086 # one pid per word
        kill -KILL $left 2>/dev/null || true
        sleep 0.1
    done
    echo "still running under $DIR: $left" >&2
    return 1
}

# A previous run that was killed may have left processes behind in this directory.
if [ -d "$DIR" ]; then cleanup; fi
trap cleanup EXIT
fresh_runtime_dir "$DIR"

if [ "${FAILOVER_NO_EXTENSION:-}" = 1 ]; then
    log "PostgreSQL $V: FAILOVER_NO_EXTENSION=1, the extension is neither built nor preloaded"
else
    log "PostgreSQL $V: installing the extension"
    install_extension "$V"
fi

ignore=()
if [ "$V" = 15 ]; then
    log "PostgreSQL $V: etcd on 127.0.0.1:$ETCD_PORT (for Patroni)"
    mkdir -p "$ETCD"
    (cd "$ETCD" && exec etcd --name failover --data-dir "$ETCD/data" \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "failover=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state new \
        --initial-cluster-token "failover-pg$V" --logger zap --log-outputs stderr \
        >"$ETCD/etcd.log" 2>&1) &
    echo $! >"$ETCD/etcd.pid"
    disown # killed by cleanup, which bash need not report
    etcd_up=0
    for _ in $(seq 1 100); do
        if ETCDCTL_API=3 etcdctl --endpoints "http://127.0.0.1:$ETCD_PORT" --dial-timeout 1s endpoint health \
            >/dev/null 2>&1; then etcd_up=1; break; fi
        sleep 0.1
    done
    [ $etcd_up = 1 ] || { cat "$ETCD/etcd.log"; echo "etcd did not come up"; exit 1; }
    export FAILOVER_ETCD=127.0.0.1:$ETCD_PORT
else
    log "PostgreSQL $V: no Patroni test (Debian's Patroni drives PostgreSQL 15 only)"
    ignore=(--ignore=pg_test/python/failover/test_patroni.py)
fi

log "PostgreSQL $V: pytest pg_test/python/failover"
status=0
export FAILOVER_VERSION=$V
export FAILOVER_BINDIR=$BINDIR
export FAILOVER_DIR=$DIR
export FAILOVER_PORT_BASE=$PORT_BASE
export FAILOVER_RUNAS=$RUNAS
export FAILOVER_REPORT=$REPORT
export FAILOVER_NO_EXTENSION=${FAILOVER_NO_EXTENSION:-}
export PYTHONDONTWRITEBYTECODE=1
(cd "$ROOT" && timeout -k 10 "$PYTEST_BUDGET" "$VENV/bin/python" -m pytest pg_test/python/failover \
    -p no:cacheprovider -p no:asyncio -q --timeout=120 "${ignore[@]}" "$@") || status=1
[ -f "$REPORT" ] && sed "s/^/pg$V failover: /" "$REPORT"

log "PostgreSQL $V: after the suite"
logs=()
while IFS= read -r f; do logs+=("$f"); done < <(find "$DIR" -name server.log -o -name patroni.log)
if [ ${#logs[@]} = 0 ]; then
    check_fail "pg$V failover: no server log: nothing ran"; status=1
else
    if grep -h 'PANIC' "${logs[@]}"; then
        check_fail "pg$V failover: PANIC in a server log"; status=1
    else
        check_ok "pg$V failover: no PANIC in the ${#logs[@]} server and Patroni logs"
    fi
    # The suite kills with SIGKILL only: any other signal is a crash of the server.
    if grep -hE 'was terminated by signal ([0-8]|1[0-9]|[2-9][0-9])\b' "${logs[@]}"; then
        check_fail "pg$V failover: a server process died of a signal the suite did not send"; status=1
    else
        check_ok "pg$V failover: no server process died of a signal but the suite's SIGKILLs"
    fi
fi
if cleanup; then
    check_ok "pg$V failover: every process the suite started is gone"
else
    check_fail "pg$V failover: processes left running"; status=1
fi
exit $status
