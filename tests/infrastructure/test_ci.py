"""What CI runs: the client SDK's tests are part of the root suite, its fresh-venv
install check (marked slow) included, so a dependency of Baton's server side that
creeps into the SDK fails CI and not a business app's install."""

from __future__ import annotations

import re
import tomllib

from tests.support.template import ROOT


def test_the_root_suite_collects_the_sdk_tests_and_deselects_nothing() -> None:
    pytest_options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"][
        "ini_options"
    ]
    assert "sdk/python/tests" in pytest_options["testpaths"]
    assert not re.search(r"(^|\s)-m\b", pytest_options["addopts"])
    assert (ROOT / "sdk/python/tests/test_sdk_install.py").is_file()


def test_ci_runs_the_whole_suite() -> None:
    steps = (ROOT / ".ci/run").read_text()
    (tests_line,) = [line for line in steps.splitlines() if "scripts/test.sh" in line]
    assert tests_line.strip() == "scripts/test.sh"  # no marker, no path: everything
    runner = (ROOT / "scripts/test.sh").read_text()
    assert 'exec .venv/bin/python -m pytest "$@"' in runner
