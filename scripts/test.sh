#!/usr/bin/env bash
# The test suite on a fresh machine: venv and dependencies, the real Redis and
# MariaDB, then pytest (arguments are passed on, e.g. tests/unit or -k callback).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
scripts/services.sh
exec .venv/bin/python -m pytest "$@"
