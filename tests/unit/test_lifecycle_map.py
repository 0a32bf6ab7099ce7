"""The map of the lifecycle at the top of ``baton`` is the truth the rest agrees with:
it names every module and only modules that exist; every function it names exists and
says its step first; the handlers, the template and the README give the same steps."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from typing import Any

import baton
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOC = baton.__doc__ or ""
STEPS = re.compile(r"[Ss]teps? (\d+)(?:-(\d+))?")
ROW = re.compile(r"^(\d+(?:-\d+)?)\s{2,}\S", re.M)


def _span(text: str) -> set[int]:
    first, _, last = text.partition("-")
    return set(range(int(first), int(last or first) + 1))


def _section(start: str, end: str) -> str:
    return DOC[DOC.index(start) : DOC.index(end)]


def _map_rows() -> dict[str, list[str]]:
    """Step -> the ``module.name`` references and ``.lua`` files of its row."""
    table = _section("The lifecycle", "Each function's handler")
    rows: dict[str, list[str]] = {}
    starts = list(ROW.finditer(table))
    for index, match in enumerate(starts):
        end = starts[index + 1].start() if index + 1 < len(starts) else len(table)
        text = table[match.start() : end]
        rows[match.group(1)] = re.findall(r"``([\w.]+)``", text) + re.findall(r"\w+\.lua", text)
    return rows


def _handler_steps() -> dict[str, set[int]]:
    sentence = " ".join(_section("Each function's handler", "Reconcile (").split())
    return {
        name: _span(steps)
        for name, steps in re.findall(r"``functions/(\w+)`` (?:steps )?(\d+(?:-\d+)?)", sentence)
    }


def _resolve(reference: str) -> Any:
    module_name, _, rest = reference.partition(".")
    target: Any = importlib.import_module(f"baton.{module_name}")
    for part in rest.split("."):
        target = getattr(target, part)
    return target


def test_the_map_covers_the_17_steps_once_each() -> None:
    covered = [step for row in _map_rows() for step in sorted(_span(row))]
    assert covered == list(range(1, 18))


def test_every_mapped_function_exists_and_says_its_step_first() -> None:
    for row, references in _map_rows().items():
        assert references, f"step {row} names nothing"
        for reference in references:
            if reference.endswith(".lua"):
                assert (Path(baton.__file__).parent / "lua" / reference).is_file(), reference
                continue
            doc = inspect.getdoc(_resolve(reference)) or ""
            said = STEPS.match(doc)
            assert said, f"{reference}: docstring does not start with its step: {doc[:60]!r}"
            assert _span(said.group(0).split()[1]) & _span(row), (reference, row, said.group(0))


def test_the_package_index_names_every_module_and_only_those() -> None:
    index = _section("Modules, top-down", "The lifecycle")
    named = set(re.findall(r"``(\w+)``", index)) - {"migrations", "lua"}
    present = {module.name for module in pkgutil.iter_modules(baton.__path__)} - {"migrations"}
    assert named == present


def test_each_handler_gives_the_steps_of_the_map() -> None:
    expected = _handler_steps()
    assert set(expected) == {"intake", "promote", "dispatch", "sweep", "callback"}
    for name, steps in expected.items():
        source = (ROOT / "functions" / name / "app.py").read_text()
        docstring = source.split('"""')[1]
        said = STEPS.search(docstring)
        assert said, f"functions/{name}: no step in its docstring"
        assert _span(said.group(0).split()[1]) == steps, (name, said.group(0))


def test_the_template_gives_the_steps_of_the_map() -> None:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=Loader)
    by_code = {
        str(resource["Properties"].get("CodeUri", "")).strip("/").split("/")[-1]: resource
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    for name, steps in _handler_steps().items():
        description = by_code[name]["Properties"]["Description"]
        said = STEPS.match(description)
        assert said, f"{name}: the template's Description does not start with its steps"
        assert _span(said.group(0).split()[1]) == steps, (name, description)


def test_the_readme_table_has_the_steps_of_the_map() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| # | step | where |") :].split("\n\n")[0]
    steps = re.findall(r"^\| (\d+(?:-\d+)?) \|", table, re.M)
    assert steps == list(_map_rows())
