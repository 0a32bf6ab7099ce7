"""The ``baton`` console script run in-process, as an operator runs it."""

from __future__ import annotations

import pytest
from baton import cli


def baton(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the console script; its exit code, stdout and stderr."""
    capsys.readouterr()
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:  # argparse's own usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    # Handlers running meanwhile on other threads of this process (the callback API the
    # algorithm service calls) print their EMF metrics to the same stdout; a real
    # console script has no such neighbours.
    lines = out.splitlines(keepends=True)
    return code, "".join(line for line in lines if not line.startswith('{"_aws":')), err
