"""constraints.txt: the exact versions that scripts/bootstrap.sh installs.

Every requirement of pyproject's dev extra (with the extras it pulls in, such as
``baton[local]``) and of the package itself must have an exact pin there, inside the
range pyproject gives. A tool added to the extra without a pin, or a range moved past
its pin, fails here rather than resolving differently on each machine.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from tests.support.template import ROOT

CONSTRAINTS = ROOT / "constraints.txt"


def read_pins(text: str) -> dict[NormalizedName, Version]:
    pins: dict[NormalizedName, Version] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        requirement = Requirement(line)
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1, f"constraints.txt:{number} is not one exact pin: {line}"
        assert specifiers[0].operator == "==", f"constraints.txt:{number} is not exact: {line}"
        assert not requirement.extras, f"constraints.txt:{number}: extras have no place here"
        assert not requirement.marker, f"constraints.txt:{number}: a pin for some machines only"
        name = canonicalize_name(requirement.name)
        assert name not in pins, f"constraints.txt:{number} pins {name} twice"
        pins[name] = Version(specifiers[0].version)
    return pins


SIBLINGS = ("local/pyproject.toml", "sdk/python/pyproject.toml")
"""The other distributions of this checkout, which scripts/bootstrap.sh installs from it
(editable) beside baton: they have no pin, their version is the checkout's."""


def sibling_versions() -> dict[NormalizedName, Version]:
    projects = [tomllib.loads((ROOT / path).read_text())["project"] for path in SIBLINGS]
    return {canonicalize_name(p["name"]): Version(p["version"]) for p in projects}


def dev_requirements() -> list[Requirement]:
    """What `pip install -e '.[dev]'` asks for by name: the package's dependencies, the
    dev extra, and the extras of the package that the dev extra names (but not the
    distributions of this checkout, see ``SIBLINGS``)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    own = canonicalize_name(project["name"])
    siblings = sibling_versions()
    extras: dict[str, list[str]] = project["optional-dependencies"]
    pending = [Requirement(line) for line in [*project["dependencies"], *extras["dev"]]]
    expanded = {"dev"}
    found: list[Requirement] = []
    while pending:
        requirement = pending.pop(0)
        if canonicalize_name(requirement.name) in siblings:
            continue
        if canonicalize_name(requirement.name) != own:
            found.append(requirement)
            continue
        for extra in sorted(requirement.extras - expanded):
            expanded.add(extra)
            pending.extend(Requirement(line) for line in extras[extra])
    return found


def pin_problems(
    requirements: Iterable[Requirement], pins: dict[NormalizedName, Version]
) -> list[str]:
    problems = []
    for requirement in requirements:
        pinned = pins.get(canonicalize_name(requirement.name))
        if pinned is None:
            problems.append(f"{requirement}: not pinned")
        elif not requirement.specifier.contains(pinned, prereleases=True):
            problems.append(f"{requirement}: pinned at {pinned}, outside the range")
    return sorted(problems)


def test_constraints_pin_every_dev_tool_inside_its_range() -> None:
    requirements = dev_requirements()
    names = {canonicalize_name(requirement.name) for requirement in requirements}
    assert {"pytest", "ruff", "mypy", "pre-commit", "moto", "sqlalchemy"} <= names

    problems = pin_problems(requirements, read_pins(CONSTRAINTS.read_text()))

    assert not problems, (
        "constraints.txt is behind pyproject.toml (scripts/pin-dev-tools.sh):\n"
        + ("\n".join(problems))
    )


def test_the_check_catches_a_missing_pin_and_a_pin_outside_its_range() -> None:
    # Given the real pins, with ruff's line dropped and pytest's moved below its range
    lines = CONSTRAINTS.read_text().splitlines()
    assert any(line.startswith("ruff==") for line in lines)
    edited = [line for line in lines if not line.startswith("ruff==")]
    edited = [("pytest==7.4.0" if line.startswith("pytest==") else line) for line in edited]

    # When the check runs over them
    problems = pin_problems(dev_requirements(), read_pins("\n".join(edited)))

    # Then both are reported, and nothing else
    assert [problem.split(":")[0].split(">")[0] for problem in problems] == ["pytest", "ruff"]


def test_baton_asks_for_the_sdk_of_this_checkout() -> None:
    # baton.contracts re-exports baton_sdk's models: the two move together, so the
    # range baton gives must hold the version the checkout's SDK has.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (sdk,) = [
        Requirement(line)
        for line in project["dependencies"]
        if canonicalize_name(Requirement(line).name) == "baton-sdk"
    ]
    assert sdk.specifier.contains(sibling_versions()[canonicalize_name("baton-sdk")])
    assert "baton-sdk" not in CONSTRAINTS.read_text()
