"""The plug-in through which a caller adds what a template needs and the generic
emulator cannot run on its own (a cache, a relational database): a profile provides
resource types of its own and points the functions at its stand-ins.

The emulator knows no profile by name, so it stays a reader of any SAM template:
``LocalCloud`` takes profile factories and calls each once, with the parts of the
running emulator a profile may use (``ProfileContext``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from baton_local.emulator.aws import LocalAws
from baton_local.emulator.stack import Provider


@dataclass(frozen=True)
class ProfileContext:
    """What the emulator lends a profile: its AWS clients (connected to moto once the
    cloud starts, before any resource is created), the state directory (SQLite files,
    function logs) and whether this run starts from an empty one."""

    aws: LocalAws
    state_dir: Path
    fresh: bool


class LocalProfile(Protocol):
    def providers(self) -> Mapping[str, Provider]:
        """Providers by resource type (``fnmatch`` patterns allowed), merged over the
        emulator's own: a type both name is the profile's."""
        ...

    def environment(self, logical_id: str, variables: dict[str, str]) -> dict[str, str]:
        """A function's environment variables, rewritten to reach the stand-ins (an
        ``--env-vars`` file still wins)."""
        ...

    def describe(self) -> list[str]:
        """Lines for the start-up banner: where the stand-ins listen."""
        ...

    def preload(self) -> Sequence[str]:
        """Libraries the functions use that read no environment at import time: imported
        once, before any instance starts, so that each cold start imports only the
        function's own code (see ``lambdas.preload``)."""
        ...

    def endpoints(self) -> Mapping[str, str]:
        """The stand-ins' URLs by a short name ("redis", "database"), for the outputs file."""
        ...

    def stop(self) -> None:
        """Stop the stand-ins; called once, after the stack's resources are deleted."""
        ...


ProfileFactory = Callable[[ProfileContext], LocalProfile]
