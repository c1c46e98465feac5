#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster on 127.0.0.1 for the tests, as an unprivileged user.
#   source .ci/postgres.sh start   -> exports NEWSLETTER_TEST_DATABASE_URL
#   .ci/postgres.sh stop
# Needs Debian's postgresql package (installed by .ci/run when missing).
set -u
PGTEST_DIR=${PGTEST_DIR:-/tmp/newsletter-pgtest}
PGTEST_PORT=${PGTEST_PORT:-54329}
PGTEST_USER=${PGTEST_USER:-postgres}

pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] && echo "$d"
}

as_user() {
  if [ "$(id -u)" = 0 ]; then runuser -u "$PGTEST_USER" -- "$@"; else "$@"; fi
}

case "${1:-start}" in
  start)
    bin=$(pg_bin) || { echo "postgres: no PostgreSQL binaries found" >&2; return 1 2>/dev/null || exit 1; }
    as_user "$bin/pg_ctl" -D "$PGTEST_DIR/data" stop -m immediate >/dev/null 2>&1 || true
    rm -rf "$PGTEST_DIR"
    mkdir -p "$PGTEST_DIR"
    [ "$(id -u)" = 0 ] && chown "$PGTEST_USER" "$PGTEST_DIR"
    as_user "$bin/initdb" -D "$PGTEST_DIR/data" -U newsletter --auth=trust -E UTF8 >/dev/null
    as_user "$bin/pg_ctl" -D "$PGTEST_DIR/data" -l "$PGTEST_DIR/log" -w \
      -o "-p $PGTEST_PORT -k $PGTEST_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
    export NEWSLETTER_TEST_DATABASE_URL="postgresql+psycopg://newsletter@127.0.0.1:$PGTEST_PORT/postgres"
    echo "postgres: test cluster on 127.0.0.1:$PGTEST_PORT ($PGTEST_DIR)"
    ;;
  stop)
    bin=$(pg_bin) && as_user "$bin/pg_ctl" -D "$PGTEST_DIR/data" stop -m fast >/dev/null 2>&1
    rm -rf "$PGTEST_DIR"
    ;;
esac
