"""What a distribution of this checkout would ship, without building the archive."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def built_files(project: Path, tmp_path: Path) -> list[str]:
    """The files setuptools puts in the project's wheel: its packages and their package
    data (a wheel is build_py's output plus metadata; this skips zipping it, and needs
    neither the network nor the wheel package)."""
    build_lib, egg_base = tmp_path / "lib", tmp_path / "egg"
    egg_base.mkdir(parents=True)
    setup = [sys.executable, "-c", "from setuptools import setup; setup()", "-q"]
    steps = ["egg_info", "--egg-base", str(egg_base), "build_py", "--build-lib", str(build_lib)]
    subprocess.run(
        [*setup, *steps],
        cwd=project,
        check=True,
        capture_output=True,
    )
    return sorted(p.relative_to(build_lib).as_posix() for p in build_lib.rglob("*") if p.is_file())
