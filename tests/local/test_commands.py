"""baton-local's side of the split: its commands join the baton console script through
entry points, its emulator stands on its own (no baton, no Baton profile), the Lambda
workers' module stays light, and its wheel carries the demo documents."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
from baton import cli
from baton.errors import SettingsError
from baton_local import commands
from baton_local.demo import algorithms

from tests.support.building import built_files

ROOT = Path(__file__).resolve().parents[2]


def _run_python(code: str) -> None:
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)


def test_baton_local_adds_its_commands_to_the_console_script() -> None:
    parser = cli.build_parser()
    local = parser.parse_args(
        ["local", "--tick", "2", "--redis-url", "redis://r", "--concurrency", "A=3"]
    )
    assert local.run is commands._local
    assert (local.tick, local.redis_url, local.concurrency) == (2.0, "redis://r", ["A=3"])
    assert local.template == "template.yaml"
    assert local.state_dir == ".baton-local"
    demo = parser.parse_args(["demo", "--tasks", "60", "--no-live", "--reports", "out"])
    assert demo.run is commands._demo
    assert (demo.tasks, demo.live, demo.reports, demo.seed) == (60, False, "out", None)
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert list(subcommands.choices) == [
        "db",
        "task",
        "algorithm",
        "reconcile",
        "openapi",
        "tasks",
        "dlq",
        "stats",
        "local",
        "demo",
    ]


def test_the_emulator_imports_neither_baton_nor_its_profile() -> None:
    _run_python(
        "import importlib, pkgutil, sys\n"
        "import baton_local.emulator as emulator\n"
        "for info in pkgutil.walk_packages(emulator.__path__, 'baton_local.emulator.'):\n"
        "    importlib.import_module(info.name)\n"
        "assert 'baton_local.emulator.cloud' in sys.modules\n"
        "leaked = [m for m in sys.modules if m == 'baton' or m.startswith('baton.')\n"
        "          or m.startswith(('baton_local.profile', 'baton_local.demo'))]\n"
        "assert not leaked, leaked\n"
    )


def test_the_workers_module_imports_only_the_standard_library() -> None:
    # each worker process imports it at every cold start
    _run_python(
        "import sys\n"
        "import baton_local.emulator.lambdas\n"
        "heavy = [m for m in ('boto3', 'botocore', 'moto', 'yaml') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )


def test_the_baton_local_wheel_carries_the_demo_documents(tmp_path: Path) -> None:
    files = built_files(ROOT / "local", tmp_path)
    documents = sorted(f for f in files if f.endswith(".txt"))
    assert documents == sorted(
        f"baton_local/demo/documents/{p.name}" for p in algorithms.DOCUMENTS_DIR.glob("*.txt")
    )
    assert len(documents) == 14
    assert "baton_local/py.typed" in files
    assert "baton_local/emulator/cloud.py" in files
    assert all(f.startswith("baton_local/") for f in files), files


def test_baton_local_takes_a_default_concurrency_and_per_function_ones() -> None:
    assert commands._concurrency([]) == (4, {})
    assert commands._concurrency(["8", "IntakeFunction=2"]) == (8, {"IntakeFunction": 2})
    for bad in (["0"], ["=3"], ["F=x"], ["many"]):
        with pytest.raises(SystemExit, match="--concurrency takes N or FUNCTION=N"):
            commands._concurrency(bad)


def test_baton_local_has_fixed_ports_samples_unless_algorithms_are_given_and_loudness() -> None:
    parser = cli.build_parser()
    local = parser.parse_args(["local"])
    assert (local.aws_port, local.api_port, local.redis_port) == (4750, 4751, 4760)
    assert commands._with_samples(local.samples, {}) is True
    assert commands._with_samples(None, {"AlgorithmsJson": "{}"}) is False
    assert commands._with_samples(parser.parse_args(["local", "--no-samples"]).samples, {}) is False
    assert commands._with_samples(True, {"AlgorithmsJson": "{}"}) is True
    assert parser.parse_args(["local", "--quiet"]).quiet
    with pytest.raises(SystemExit):
        parser.parse_args(["local", "--quiet", "--verbose"])


@pytest.mark.parametrize(
    "argv",
    [
        ["task", "show", "t-1"],
        ["task", "cancel", "t-1"],
        ["task", "retry", "t-1"],
        ["tasks", "list"],
        ["tasks", "retry", "--status", "failed"],
        ["stats"],
        ["dlq", "list"],
        ["dlq", "redrive"],
        ["reconcile"],
        ["db", "upgrade"],
    ],
)
def test_every_operator_command_takes_local_and_says_when_there_is_no_local_stack(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main([*argv, "--local", "--state-dir", str(tmp_path)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"baton: --local: no {tmp_path / 'env'}: start the local stack first")


def test_local_refuses_the_files_of_a_stack_that_is_gone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "env").write_text("BATON_REDIS_URL=redis://127.0.0.1:1/0\n")
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    (tmp_path / "outputs.json").write_text(json.dumps({"pid": int(gone.stdout)}))

    assert cli.main(["reconcile", "--local", "--state-dir", str(tmp_path)]) == 2
    assert "is not running" in capsys.readouterr().err


def test_the_env_file_reads_as_a_shell_would(tmp_path: Path) -> None:
    path = tmp_path / "env"
    path.write_text("# comment\nA=plain\nB='with space'\nC=\n\nD='it'\"'\"'s'\n")
    assert cli.read_env_file(path) == {"A": "plain", "B": "with space", "C": "", "D": "it's"}
    path.write_text("not a line\n")
    with pytest.raises(SettingsError, match=":1: not a KEY=VALUE line"):
        cli.read_env_file(path)
