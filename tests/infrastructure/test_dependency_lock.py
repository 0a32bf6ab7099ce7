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
