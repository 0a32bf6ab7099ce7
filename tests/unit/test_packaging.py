"""The product ships alone: the baton package, the BatonLayer build (baton, and the
client SDK whose contracts and signing it uses) and the baton wheel hold no emulator,
no demo and no demo documents (those are baton-local's, in local/); and without
baton-local the console script says how to get its commands."""

from __future__ import annotations

import pkgutil
import subprocess
from pathlib import Path

import baton
import pytest
from baton import cli

from tests.support.building import built_files

ROOT = Path(__file__).resolve().parents[2]
DEVELOPMENT_ONLY = ("local", "emulator", "demo", "profile", "documents")
# importlib.util.MAGIC_NUMBER of CPython 3.12 (3531), the Lambda runtime's Python
PYTHON_312_MAGIC = (3531).to_bytes(2, "little") + b"\r\n"


def test_the_baton_package_has_no_emulator_or_demo_module() -> None:
    modules = [info.name for info in pkgutil.walk_packages(baton.__path__, "baton.")]
    assert "baton.cli" in modules
    assert not [m for m in modules if set(m.split(".")[1:]) & set(DEVELOPMENT_ONLY)]


def test_the_layer_ships_the_baton_package_and_the_sdk_alone(tmp_path: Path) -> None:
    subprocess.run(
        ["make", "-s", "-f", "shared/Makefile", "build-BatonLayer", f"ARTIFACTS_DIR={tmp_path}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    files = [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()]
    assert "python/baton/__init__.py" in files
    # baton_sdk defines the contracts baton re-exports, and signs what it sends
    assert "python/baton_sdk/__init__.py" in files
    assert "python/baton_sdk/py.typed" in files
    assert {f.split("/")[1] for f in files} == {"baton", "baton_sdk"}, files
    assert all(f.startswith(("python/baton/", "python/baton_sdk/")) for f in files), files
    # the bytecode of the runtime's Python and nothing else (no cache of the build host's)
    sources = [f for f in files if f.endswith(".py")]
    compiled = [f for f in files if "__pycache__" in f]
    assert sorted(compiled) == sorted(bytecode_path(f) for f in sources)
    assert not [f for f in files if ".egg-info" in f]
    assert not [f for f in files if set(f.split("/")[2:-1]) & set(DEVELOPMENT_ONLY)]
    assert not [f for f in files if f.endswith(".txt")]
    # what the package needs at run time is there
    assert any(f.startswith("python/baton/lua/") and f.endswith(".lua") for f in files)
    assert any(f.startswith("python/baton/migrations/versions/") for f in files)


def test_the_layer_bytecode_is_the_runtimes_and_never_checked_against_the_source(
    tmp_path: Path,
) -> None:
    """Lambda mounts the layer read-only: bytecode that Python 3.12 would not take (of
    another version, or stale by the mtimes the zip gives the files) is compiled again
    by every cold start."""
    subprocess.run(
        ["make", "-s", "-f", "shared/Makefile", "build-BatonLayer", f"ARTIFACTS_DIR={tmp_path}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    python = tmp_path / "python"
    sources = sorted(python.rglob("*.py"))
    assert len(sources) > 40
    for source in sources:
        pyc = tmp_path / bytecode_path(source.relative_to(tmp_path).as_posix())
        header = pyc.read_bytes()[:16]
        assert header[:4] == PYTHON_312_MAGIC, (pyc, header[:4])
        # PEP 552 flags: hash-based (bit 0), source not checked (bit 1 clear)
        assert int.from_bytes(header[4:8], "little") == 0b01, pyc
        # the path tracebacks show is where Lambda puts the file
        where = f"/opt/python/{source.relative_to(python).as_posix()}".encode()
        assert where in pyc.read_bytes(), pyc


def bytecode_path(source: str) -> str:
    """Where CPython 3.12 looks for the bytecode of ``source`` (PEP 3147)."""
    folder, _, name = source.rpartition("/")
    return f"{folder}/__pycache__/{name.removesuffix('.py')}.cpython-312.pyc"


def test_the_baton_wheel_carries_no_demo_documents(tmp_path: Path) -> None:
    files = built_files(ROOT, tmp_path)
    assert "baton/cli.py" in files
    assert all(f.startswith("baton/") for f in files), files
    assert not [f for f in files if f.endswith(".txt")]
    assert not [f for f in files if set(f.split("/")[1:-1]) & set(DEVELOPMENT_ONLY)]
    assert "baton/py.typed" in files
    assert any(f.startswith("baton/lua/") for f in files)


def test_without_baton_local_its_commands_say_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "entry_points", lambda group: [])
    for argv in (["local"], ["local", "--tick", "1", "--redis-url", "redis://x"], ["demo", "-h"]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        command = argv[0]
        assert err == f"baton {command} needs the baton-local package: pip install ./local\n"
    # the product's own commands still refuse what they do not know
    with pytest.raises(SystemExit):
        cli.main(["openapi", "--tick", "1"])
    assert "unrecognized arguments: --tick 1" in capsys.readouterr().err


def test_a_broken_baton_local_leaves_the_other_commands_working(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Broken:
        name = "local"

        def load(self) -> None:
            raise ImportError("No module named 'fakeredis'")

    monkeypatch.setattr(cli, "entry_points", lambda group: [Broken()])
    assert cli.main(["openapi"]) == 0
    assert '"openapi"' in capsys.readouterr().out
    assert cli.main(["local"]) == 2
    assert "does not load: No module named 'fakeredis'" in capsys.readouterr().err
