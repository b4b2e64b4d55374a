#!/usr/bin/env bash
# Installs what Earmark needs, idempotently: Debian packages listed in scripts/apt-packages.txt and the
# npm packages of package-lock.json. Fast when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

quiet=0
[ "${1:-}" = "--quiet" ] && quiet=1
say() { [ "$quiet" = 1 ] || echo "setup: $*"; }

major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$major" -lt 20 ]; then
  echo "setup: Earmark needs Node.js 20 or newer (found: $(node --version 2>/dev/null || echo none))." >&2
  exit 1
fi

# Debian packages: one name a line, '#' starts a comment.
wanted=$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' scripts/apt-packages.txt 2>/dev/null || true)
missing=()
for pkg in $wanted; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: Earmark needs these Debian packages: ${missing[*]}" >&2
    echo "setup: install them as root: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

# npm packages: reinstall only when package-lock.json changed since the last install.
stamp=node_modules/.earmark-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "installing npm packages (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
  echo "$want" > "$stamp"
fi
say "ready"
