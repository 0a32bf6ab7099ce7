#!/usr/bin/env bash
# The whole system on this machine: venv and dependencies, then `baton demo`, which
# emulates the SAM template in-process (moto, an embedded Redis, SQLite) and runs a
# small document platform against it. Arguments go to `baton demo` (--tasks 50 ...).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/baton demo "$@"
