"""baton-local's side of the split: its commands join the baton console script through
entry points, its emulator stands on its own (no baton, no Baton profile), the Lambda
workers' module stays light, and its wheel carries the demo documents."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from baton import cli
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
