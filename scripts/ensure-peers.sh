#!/usr/bin/env bash
# npm "pretest": the interop tests drive real SIP peers (SIPp, Kamailio, sipsak); the dashboard test drives a real
# headless browser (Debian's chromium, driven by playwright-core).
# Quiet when they are all present; installs them when running as root (CI, containers);
# otherwise names the packages and fails, so a missing peer is never a confusing test error.
set -euo pipefail

# binary -> Debian package that provides it
declare -A PKG_OF=([sipp]=sip-tester [kamailio]=kamailio [sipsak]=sipsak [chromium]=chromium)
PACKAGES="sip-tester kamailio kamailio-tls-modules sipsak chromium"

missing=()
for bin in sipp kamailio sipsak chromium; do
  # kamailio lives in /usr/sbin, which is not on every non-root PATH
  if ! command -v "$bin" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$bin" ]; then
    missing+=("$bin (package ${PKG_OF[$bin]})")
  fi
done

# The TLS tests run Kamailio as a TLS peer: its tls module is a package of its own.
has_kamailio_tls() { compgen -G '/usr/lib/*/kamailio/modules/tls.so' >/dev/null || compgen -G '/usr/lib/kamailio/modules/tls.so' >/dev/null; }
has_kamailio_tls || missing+=("kamailio tls.so (package kamailio-tls-modules)")

[ "${#missing[@]}" -eq 0 ] && exit 0

echo "ensure-peers: missing test peers: ${missing[*]}" >&2
if [ "${EUID:-$(id -u)}" -eq 0 ]; then
  echo "ensure-peers: installing $PACKAGES with apt-get" >&2
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y $PACKAGES
  for bin in sipp kamailio sipsak chromium; do
    if ! command -v "$bin" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$bin" ]; then
      echo "ensure-peers: $bin still missing after install" >&2
      exit 1
    fi
  done
  has_kamailio_tls || { echo "ensure-peers: kamailio tls.so still missing after install" >&2; exit 1; }
  exit 0
fi

echo "ensure-peers: not root, cannot install. Run:" >&2
echo "  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y $PACKAGES" >&2
exit 1
