#!/usr/bin/env bash
# Rewrite constraints.txt from what pip resolves for `-e '.[dev]' -e ./local -e ./sdk/python`: in a throwaway venv
# (pyproject's ranges resolved afresh, to move the pins forward), or in the venv given
# as the argument (to pin what that venv already has). Review the diff, then run
# scripts/bootstrap.sh and the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
venv=${1:-}
if [ -z "$venv" ]; then
  venv=$(mktemp -d)
  trap 'rm -rf "$venv"' EXIT
  "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -e '.[dev]' -e ./local -e ./sdk/python
fi

{
  cat <<'HEADER'
# Exact versions of everything `pip install -e '.[dev]'` installs: the development tools
# (pytest, ruff, mypy, the stubs, cfn-lint, pre-commit ...) and the package's own
# dependencies, so that every machine checks the code with the same tools. What the
# Lambda layer ships is pinned apart, in layers/dependencies/requirements.txt.
# scripts/bootstrap.sh installs with `-c constraints.txt`; its stamp includes this file.
# Regenerate with scripts/pin-dev-tools.sh (python 3.11): never edit the pins by hand.
HEADER
  # --all keeps setuptools, which the packaging tests run; pip pins itself elsewhere
  "$venv/bin/python" -m pip freeze --all --exclude-editable | grep -v '^pip=='
} > constraints.txt
