"""Where the handlers' CPU goes: bench.cost's workload, the intake and callback
invocations profiled.

The same stack as ``bench.cost`` (real handlers in-process, SQS on moto, the no-op
service, the loopback gateway, Redis and MariaDB), the same lifecycle (a warm-up, then
N tasks counted), with a profiler running around every invocation of the profiled
handlers and around the work each hands to a thread pool (the dispatch requests of
intake's fast path), so that a handler's profile holds its pool threads' share too.

The profiler is cProfile with ``time.thread_time`` as its clock, so that a function's
figure is the CPU it spent, not the time it waited on a socket or a lock (a sampling
profiler such as pyinstrument samples the wall clock: with a handler's time mostly
spent waiting on MariaDB, Redis and HTTP, its tree shows the waits). Printed as the
top entries by cumulative and by own time, per handler and for its pool threads. Its
per-call overhead inflates code made of many small Python calls (SQLAlchemy,
botocore) about fourfold against C (ssl, hashlib, pydantic-core): read shares and
call counts, and ``bench.cost`` for milliseconds.

    python -m bench.profile [--tasks 200] [--warmup 20] [--handlers intake,callback]
        [--top 40] [--save DIR]

``--save DIR`` also writes DIR/<handler>.txt and DIR/<handler>.prof (pstats, for
``python -m pstats`` or snakeviz).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.cost import Meter, lifecycle, quiet, stack

_current = threading.local()


def package_of(path: str) -> str:
    """What a profiled function's file belongs to: a distribution of site-packages, a
    module of Baton's, or the standard library's module."""
    if found := re.search(r"site-packages/([^/]+)", path):
        return found.group(1).removesuffix(".py")
    if found := re.search(r"/(baton|baton_sdk)/([^/]+)\.py$", path):
        return f"{found.group(1)}.{found.group(2)}"
    if found := re.search(r"/python3\.\d+/([^/]+)", path):
        return "stdlib " + found.group(1).removesuffix(".py")
    return path.rsplit("/", 1)[-1]


def own_cpu_by_package(stats: pstats.Stats) -> Counter[str]:
    """Each function's own CPU summed by package; a C function's (``~``: socket reads,
    hashing, ssl, pydantic-core) goes to the packages that called it, in proportion."""
    totals: Counter[str] = Counter()
    entries: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]  # untyped in typeshed
    for (path, _line, _name), (_cc, _nc, own, _cum, callers) in entries.items():
        if path == "~" and callers:
            for (caller_path, _l, _n), edge in callers.items():
                totals[package_of(caller_path)] += edge[2]
        else:
            totals[package_of(path)] += own
    return totals


class Profiles:
    """One profile per handler, its pool threads' work included."""

    def __init__(self) -> None:
        self.profiles: dict[str, list[cProfile.Profile]] = {}
        self.cpu_ms: dict[str, float] = {}
        self._lock = threading.Lock()

    @contextmanager
    def running(self, name: str) -> Iterator[None]:
        """Profiles the block as ``name``'s, in the calling thread."""
        started = time.thread_time()
        profile = cProfile.Profile(time.thread_time)
        profile.enable()
        try:
            yield
        finally:
            profile.disable()
            with self._lock:
                self.profiles.setdefault(name, []).append(profile)
        with self._lock:
            self.cpu_ms[name] = self.cpu_ms.get(name, 0.0) + (time.thread_time() - started) * 1e3

    def report(
        self, name: str, invocations: int, tasks: int, top: int, save: Path | None = None
    ) -> str:
        out = io.StringIO()
        cpu = self.cpu_ms.get(name, 0.0)
        print(
            f"== {name}: {invocations} invocations, CPU {cpu:.0f} ms under the profiler "
            f"({cpu / tasks:.2f} ms per task)",
            file=out,
        )
        profiles = self.profiles.get(name, [])
        if not profiles:
            return out.getvalue()
        stats = pstats.Stats(profiles[0], stream=out)
        for profile in profiles[1:]:
            stats.add(profile)
        if save is not None:
            stats.dump_stats(str(save.with_suffix(".prof")))
        packages = own_cpu_by_package(stats)
        total = sum(packages.values()) or 1.0
        print("-- own CPU by package (C calls counted to their callers)", file=out)
        for package, seconds in packages.most_common(20):
            print(f"  {100 * seconds / total:5.1f}%  {package}", file=out)
        stats.strip_dirs()
        print("-- by cumulative CPU", file=out)
        stats.sort_stats("cumulative").print_stats(top)
        print("-- by own CPU", file=out)
        stats.sort_stats("tottime").print_stats(top)
        return out.getvalue()


@contextmanager
def profiled_pools(profiles: Profiles) -> Iterator[None]:
    """Work submitted to a thread pool while a profiled invocation runs is profiled as
    ``<handler>/pool``."""
    original = ThreadPoolExecutor.submit

    def submit(self: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kw: Any) -> Any:
        name: str | None = getattr(_current, "name", None)
        if name is None:
            return original(self, fn, *args, **kw)

        def timed(*inner: Any, **inner_kw: Any) -> Any:
            with profiles.running(f"{name}/pool"):
                return fn(*inner, **inner_kw)

        return original(self, timed, *args, **kw)

    ThreadPoolExecutor.submit = submit  # type: ignore[method-assign, assignment]
    try:
        yield
    finally:
        ThreadPoolExecutor.submit = original  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20, help="tasks run first, not profiled")
    parser.add_argument("--handlers", default="intake,callback")
    parser.add_argument("--top", type=int, default=40, help="entries per listing")
    parser.add_argument("--save", type=Path, help="also write DIR/<handler>.txt and .prof")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.handlers.split(",") if name.strip()]
    profiles = Profiles()
    armed = threading.Event()
    counts: dict[str, int] = dict.fromkeys(names, 0)
    meter = Meter()
    with quiet(Meter()), profiled_pools(profiles), stack(meter) as s:
        for name in names:
            module = s.handlers._modules[name]
            handler = module.lambda_handler

            def wrapped(event: Any, context: Any, _h: Any = handler, _n: str = name) -> Any:
                if not armed.is_set():
                    return _h(event, context)
                counts[_n] += 1
                _current.name = _n
                try:
                    with profiles.running(_n):
                        return _h(event, context)
                finally:
                    _current.name = None

            vars(module)["lambda_handler"] = wrapped
        # The warm-up is not profiled: its first invocations pay the lazy imports and
        # the first connections, which a warm Lambda instance has behind it.
        lifecycle(s, 0, args.warmup)
        armed.set()
        lifecycle(s, args.tasks, 0)
    reports = []
    for name in names:
        for part in (name, f"{name}/pool"):
            if part in profiles.cpu_ms:
                save = args.save / part.replace("/", "-") if args.save else None
                if save is not None:
                    save.parent.mkdir(parents=True, exist_ok=True)
                text = profiles.report(part, counts.get(name, 0), args.tasks, args.top, save)
                reports.append(text)
                if save is not None:
                    save.with_suffix(".txt").write_text(text)
    print("\n".join(reports))


if __name__ == "__main__":
    main()
