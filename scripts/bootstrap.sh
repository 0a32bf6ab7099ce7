#!/usr/bin/env bash
# Create .venv and install Baton (shared/), baton-local (local/: the emulator and the
# demo) and baton-sdk (sdk/python/) editable with the development tools at the versions
# of constraints.txt, once per change of a pyproject.toml or of constraints.txt. Safe to
# run again: it does nothing when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
stamp=.venv/.installed-$(cat pyproject.toml local/pyproject.toml sdk/python/pyproject.toml constraints.txt | sha256sum | cut -c1-16)

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -c constraints.txt -e '.[dev]' -e ./local -e ./sdk/python
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# The SAM CLI pins its own versions of boto3 and friends: it lives in a venv of its
# own so that it never changes what the tests run against.
if [ "${WITH_SAM:-0}" = 1 ]; then
  sam_stamp=.venv-sam/.installed-$(sha256sum requirements-sam.txt | cut -c1-16)
  if [ ! -x .venv-sam/bin/sam ] || [ ! -f "$sam_stamp" ]; then
    "$PYTHON" -m venv .venv-sam
    .venv-sam/bin/python -m pip install --quiet --upgrade pip
    .venv-sam/bin/python -m pip install --quiet -r requirements-sam.txt
    rm -f .venv-sam/.installed-*
    touch "$sam_stamp"
  fi
fi
