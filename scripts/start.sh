#!/usr/bin/env bash
# `npm start`: set up what is missing, then run the server. $PORT, $HOST and $EARMARK_* configure it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node bin/earmark.js serve "$@"
