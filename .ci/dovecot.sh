#!/usr/bin/env bash
# Start a throwaway dovecot IMAP server on 127.0.0.1 for the bounce tests, as an
# unprivileged user, in a fresh temporary folder:
#   source .ci/dovecot.sh start   -> exports NEWSLETTER_TEST_IMAP_{PORT,STARTTLS_PORT,CA,
#                                    USER,PASSWORD} and DOVECOT_TEST_DIR
#   .ci/dovecot.sh stop           (uses DOVECOT_TEST_DIR)
# IMAPS, and IMAP that requires STARTTLS before login, with a self-signed certificate for
# 127.0.0.1 (NEWSLETTER_TEST_IMAP_CA),
# one user with a password, Maildir storage.  Needs Debian's dovecot-imapd (installed by
# .ci/run when missing).
set -u
DOVECOT_TEST_USER=${DOVECOT_TEST_USER:-nobody}

dovecot_as_user() {
  if [ "$(id -u)" = 0 ]; then runuser -u "$DOVECOT_TEST_USER" -- "$@"; else "$@"; fi
}

dovecot_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

dovecot_start() {
  local bin dir port starttls_port uid gid
  bin=$(command -v dovecot || echo /usr/sbin/dovecot)
  [ -x "$bin" ] && [ -x /usr/lib/dovecot/imap ] || { echo "dovecot: dovecot-imapd is not installed" >&2; return 1; }
  dir=$(mktemp -d /tmp/newsletter-dovecot.XXXXXX) || return 1
  port=$(dovecot_free_port) || return 1
  starttls_port=$(dovecot_free_port) || return 1
  if [ "$(id -u)" = 0 ]; then
    chown "$DOVECOT_TEST_USER" "$dir"
    uid=$(id -u "$DOVECOT_TEST_USER"); gid=$(id -g "$DOVECOT_TEST_USER")
  else
    uid=$(id -u); gid=$(id -g)
  fi
  local user name
  name=$(id -un "$uid")
  user=bounces
  local password
  password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')
  dovecot_as_user mkdir -p "$dir/run" "$dir/mail" "$dir/state"
  dovecot_as_user openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=127.0.0.1" \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" >/dev/null 2>&1 || { echo "dovecot: openssl failed" >&2; return 1; }
  dovecot_as_user sh -c "printf '%s:{PLAIN}%s:%s:%s::%s\n' '$user' '$password' '$uid' '$gid' '$dir/mail/$user' > '$dir/users'"
  dovecot_as_user sh -c "cat > '$dir/dovecot.conf'" <<EOF
protocols = imap
listen = 127.0.0.1
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/log
instance_name = newsletter-test-$port
default_internal_user = $name
default_internal_group = $(id -gn "$uid")
default_login_user = $name
ssl = required
ssl_cert = <$dir/cert.pem
ssl_key = <$dir/key.pem
disable_plaintext_auth = yes
auth_mechanisms = plain login
passdb {
  driver = passwd-file
  args = scheme=PLAIN $dir/users
}
userdb {
  driver = passwd-file
  args = $dir/users
}
mail_location = maildir:~/Maildir
mail_uid = $uid
mail_gid = $gid
first_valid_uid = 0
service imap-login {
  chroot =
  inet_listener imap {
    address = 127.0.0.1
    port = $starttls_port
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $port
    ssl = yes
  }
}
service anvil {
  chroot =
}
service stats {
  unix_listener stats-reader {
    user = $name
  }
  unix_listener stats-writer {
    user = $name
  }
}
EOF
  # Not attached to our output: a caller reading it to the end would wait for the daemon.
  dovecot_as_user "$bin" -c "$dir/dovecot.conf" </dev/null >"$dir/start.log" 2>&1 || {
    echo "dovecot: failed to start:" >&2; cat "$dir/start.log" "$dir/log" >&2 2>/dev/null; return 1; }
  local i
  for i in $(seq 1 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2).close()" 2>/dev/null && break
    sleep 0.1
  done
  export DOVECOT_TEST_DIR=$dir
  export NEWSLETTER_TEST_IMAP_PORT=$port
  export NEWSLETTER_TEST_IMAP_STARTTLS_PORT=$starttls_port
  export NEWSLETTER_TEST_IMAP_CA=$dir/cert.pem
  export NEWSLETTER_TEST_IMAP_USER=$user
  export NEWSLETTER_TEST_IMAP_PASSWORD=$password
  echo "dovecot: test IMAP server on 127.0.0.1:$port ($dir)"
}

dovecot_stop() {
  local dir=${DOVECOT_TEST_DIR:-}
  [ -n "$dir" ] && [ -f "$dir/dovecot.conf" ] || return 0
  dovecot_as_user "$(command -v doveadm || echo /usr/bin/doveadm)" -c "$dir/dovecot.conf" stop >/dev/null 2>&1 || true
  local pid
  pid=$(cat "$dir/run/master.pid" 2>/dev/null) && kill "$pid" 2>/dev/null
  rm -rf "$dir"
}

case "${1:-start}" in
  start) dovecot_start ;;
  stop) dovecot_stop ;;
esac
