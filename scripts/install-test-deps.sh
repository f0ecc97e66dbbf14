#!/usr/bin/env bash
# System packages the test suite drives for real: Dovecot (IMAP tests) and Chromium (browser tests of
# the web pages, driven by Playwright; its own browser download is not used).
# Installs them with apt when missing and running as root; otherwise says what is missing,
# and the tests that need them fail under CI=true (skip elsewhere).
set -uo pipefail
missing=()
if ! command -v dovecot >/dev/null 2>&1 && [ ! -x /usr/sbin/dovecot ]; then missing+=(dovecot-imapd); fi
if [ ! -x /usr/bin/chromium ]; then missing+=(chromium); fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing test dependencies: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { echo "apt-get install ${missing[*]} failed" >&2; exit 1; }
  # The Debian package starts a system-wide Dovecot; the tests run their own.
  (systemctl stop dovecot 2>/dev/null || service dovecot stop 2>/dev/null || pkill -x dovecot) >/dev/null 2>&1 || true
else
  echo "Missing test dependencies (install them as root): ${missing[*]}" >&2
fi
exit 0
