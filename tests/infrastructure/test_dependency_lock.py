"""The dependency layer's lock: layers/dependencies/requirements.txt and its build recipe.

What the layer ships must be exactly pinned, built for the Lambda platform, and must
leave the runtime's own AWS SDK alone.
"""

from __future__ import annotations

import re

from tests.support.template import ROOT

# Runtime-provided packages that the dependency layer must not ship (they would
# shadow the runtime's boto3/botocore pair).
RUNTIME_PROVIDED = {
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "urllib3",
    "python-dateutil",
    "six",
}


def test_dependency_lock_is_pinned_and_leaves_the_runtime_alone() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "layers/dependencies/requirements.txt").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    pins = {}
    for line in lines:
        name, sep, version = line.partition("==")
        assert sep, f"not pinned: {line}"
        assert re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", version), f"not pinned: {line}"
        pins[re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()] = version
    assert not RUNTIME_PROVIDED & set(pins)
    for needed in (
        "aws-lambda-powertools",
        "aws-xray-sdk",
        "redis",
        "pymysql",
        "sqlalchemy",
        "alembic",
        "pydantic",
        "pydantic-core",
        "pydantic-settings",
        "standardwebhooks",  # baton_sdk.signing, which BatonLayer ships beside baton
    ):
        assert needed in pins, needed
    assert pins["sqlalchemy"].startswith("2.")
    makefile = (ROOT / "layers/dependencies/Makefile").read_text()
    for flag in (
        "--platform manylinux2014_aarch64",
        "--python-version 3.12",
        "--only-binary=:all:",
        "--no-deps",
        '"$(ARTIFACTS_DIR)/python"',
    ):
        assert flag in makefile, flag
    # pip must not compile (with the build host's Python); the runtime's Python does
    assert "--no-compile" in makefile
    assert "include $(HERE)/../bytecode.mk" in makefile
    assert "$(call compile-bytecode,$(ARTIFACTS_DIR)/python)" in makefile


def test_both_layers_ship_unchecked_bytecode_of_the_runtimes_python() -> None:
    """/opt is read-only: bytecode must be the runtime's version (3.12), and hash-based
    without a check of the source, so that no mtime makes a cold start recompile."""
    recipe = (ROOT / "layers/bytecode.mk").read_text()
    assert "python3.12" in recipe
    assert "sys.version_info[:2] == (3, 12)" in recipe
    assert "-m compileall -q -j 0 --invalidation-mode unchecked-hash" in recipe
    for makefile in ("layers/dependencies/Makefile", "shared/Makefile"):
        text = (ROOT / makefile).read_text()
        assert "bytecode.mk" in text, makefile
        assert "$(call compile-bytecode,$(ARTIFACTS_DIR)/python)" in text, makefile
