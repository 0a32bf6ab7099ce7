"""The distribution on its own: installed into a fresh virtual environment, it brings
none of Baton's server-side dependencies."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

SDK = Path(__file__).resolve().parents[1]
SERVER_SIDE = ["SQLAlchemy", "redis", "PyMySQL", "aws-lambda-powertools", "alembic"]

CHECK = """
import importlib.metadata as m, json, baton_sdk
from baton_sdk import BatonClient, Dispatch
present = {}
for name in NAMES:
    try:
        present[name] = m.version(name)
    except m.PackageNotFoundError:
        pass
print(json.dumps({"present": present, "requires": m.requires("baton-sdk"),
                  "typed": (m.files("baton-sdk") is not None
                            and any(str(f).endswith("py.typed") for f in m.files("baton-sdk")))}))
"""


def site_packages(root: Path) -> Path:
    (found,) = root.glob("lib/python*/site-packages")
    return found


def size_of(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@pytest.mark.slow
def test_fresh_install_has_no_server_side_dependencies(tmp_path: Path) -> None:
    bare, target = tmp_path / "bare", tmp_path / "sdk"
    venv.create(bare, with_pip=True)
    venv.create(target, with_pip=True)
    python = target / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(SDK)],
        check=True,
        timeout=600,
        capture_output=True,
    )
    script = CHECK.replace("NAMES", repr(SERVER_SIDE))
    out = subprocess.run(
        [str(python), "-c", script], check=True, capture_output=True, text=True, timeout=60
    )
    report = json.loads(out.stdout)
    assert report["present"] == {}
    assert report["typed"]
    assert sorted(r.split(">")[0].split("<")[0] for r in report["requires"]) == [
        "boto3",
        "pydantic",
        "standardwebhooks",
    ]
    added = size_of(site_packages(target)) - size_of(site_packages(bare))
    sys.stdout.write(f"\nbaton-sdk install adds {added / 2**20:.1f} MiB to a bare venv\n")
