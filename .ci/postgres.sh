#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster on 127.0.0.1 for the tests, as an unprivileged user.
#   source .ci/postgres.sh start   -> exports NEWSLETTER_TEST_DATABASE_URL and PGTEST_DIR
#   .ci/postgres.sh stop           -> stops the cluster in $PGTEST_DIR and removes it
# Each start gets a fresh directory (mktemp) and a free port, so two runs on one machine
# never share, or wipe, each other's cluster; stop touches only the one named by
# PGTEST_DIR (exported by start into the shell that sourced it).
# Needs Debian's postgresql package (installed by .ci/run when missing).
set -u
PGTEST_USER=${PGTEST_USER:-postgres}

pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] && echo "$d"
}

as_user() {
  if [ "$(id -u)" = 0 ]; then runuser -u "$PGTEST_USER" -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

case "${1:-start}" in
  start)
    bin=$(pg_bin) || { echo "postgres: no PostgreSQL binaries found" >&2; return 1 2>/dev/null || exit 1; }
    dir=$(mktemp -d "${TMPDIR:-/tmp}/newsletter-pgtest.XXXXXX") || { return 1 2>/dev/null || exit 1; }
    [ "$(id -u)" = 0 ] && chown "$PGTEST_USER" "$dir"
    as_user "$bin/initdb" -D "$dir/data" -U newsletter --auth=trust -E UTF8 >/dev/null || {
      rm -rf "$dir"; return 1 2>/dev/null || exit 1; }
    # A port found free can be taken by someone else before the server binds it: try again.
    started=""
    for _ in 1 2 3 4 5; do
      port=$(free_port)
      if as_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
          -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
          start >/dev/null; then
        started=1
        break
      fi
    done
    if [ -z "$started" ]; then
      echo "postgres: the cluster in $dir did not start; see $dir/log" >&2
      return 1 2>/dev/null || exit 1
    fi
    export PGTEST_DIR=$dir
    export NEWSLETTER_TEST_DATABASE_URL="postgresql+psycopg://newsletter@127.0.0.1:$port/postgres"
    echo "postgres: test cluster on 127.0.0.1:$port ($dir)"
    ;;
  stop)
    dir=${PGTEST_DIR:-}
    case "$dir" in
      */newsletter-pgtest.*) ;;
      *) echo "postgres: PGTEST_DIR is not a cluster started by this script; nothing stopped" >&2
         exit 1 ;;
    esac
    bin=$(pg_bin) && as_user "$bin/pg_ctl" -D "$dir/data" stop -m fast >/dev/null 2>&1
    rm -rf "$dir"
    ;;
esac
