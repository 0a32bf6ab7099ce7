"""What one admission costs (admit.lua, the weighted fair step), against the real Redis
on this machine: the round trips from the caller and the time of a call (median and
p95), for 1, 10 and 100 apps with ready tasks, with 1,000 and 100,000 ready tasks in all.

Each sample admits one task into a free slot and then frees the slot again (not
timed), so the algorithm stays in the same state from sample to sample. Admission must
stay flat in the number of ready tasks (it reads each app's head, never a queue) and
grow at most linearly in the number of backlogged apps (it compares their heads).

    python -m bench.admission [--samples 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from baton.policy import policy_digest
from baton.queue import Policy, TaskQueue
from baton.records import QueuedTask

REDIS = os.environ.get("BATON_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ALGORITHM = "ocr"
START = datetime(2026, 12, 1, tzinfo=UTC)


class CountingRedis(redis.Redis):
    """Counts the commands it sends: each is one round trip (nothing is pipelined)."""

    sent = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.sent += 1
        # redis-py leaves execute_command unannotated
        return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]


def _fill(queue: TaskQueue, apps: int, ready: int) -> None:
    per_app = -(-ready // apps)
    batch: list[QueuedTask] = []
    for app in range(apps):
        for n in range(per_app):
            batch.append(
                QueuedTask(
                    uuid.uuid4().hex,
                    1,
                    n % 5,
                    START + timedelta(milliseconds=n),
                    f"app-{app:03d}",
                )
            )
            if len(batch) == 2000:
                queue.enqueue(ALGORITHM, batch)
                batch = []
    queue.enqueue(ALGORITHM, batch)


def measure(client: CountingRedis, apps: int, ready: int, samples: int) -> dict[str, Any]:
    prefix = f"baton-bench-{uuid.uuid4().hex[:8]}"
    queue = TaskQueue(client, prefix)
    try:
        policy = Policy(
            capacity=1_000,
            endpoints=[("http://127.0.0.1:9/ocr", 1_000)],
            weights={f"app-{app:03d}": 1 + app % 4 for app in range(apps)},
        )
        queue.write_policy(ALGORITHM, policy, policy_digest(policy), 0.0, 0.0)
        queue.restore(ALGORITHM, [], [])
        _fill(queue, apps, ready + samples + apps)  # each sample takes one away
        lease = START + timedelta(hours=1)
        queue.admit(ALGORITHM, lease, 1, START)  # learns the apps; not counted
        times: list[float] = []
        round_trips = 0
        for n in range(samples):
            now = START + timedelta(seconds=n)
            sent = client.sent
            started = time.perf_counter()
            admitted = queue.admit(ALGORITHM, lease, 1, now)
            times.append(time.perf_counter() - started)
            round_trips += client.sent - sent
            assert len(admitted.slots) == 1
            for slot in admitted.slots:
                queue.release(ALGORITHM, slot.task_id, slot.attempt, now)
        times.sort()
        return {
            "apps": apps,
            "ready": ready,
            "median_ms": statistics.median(times) * 1000,
            "p95_ms": times[int(0.95 * len(times))] * 1000,
            "round_trips_per_admission": round_trips / samples,
        }
    finally:
        for key in client.scan_iter(match=f"{prefix}:*", count=5000):
            client.delete(key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    client = CountingRedis(connection_pool=redis.ConnectionPool.from_url(REDIS))
    results = [
        measure(client, apps, ready, args.samples)
        for apps in (1, 10, 100)
        for ready in (1_000, 100_000)
    ]
    by = {(r["apps"], r["ready"]): r for r in results}
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"admission (admit.lua), {args.samples} samples each, real Redis at {REDIS}")
    print(f"{'apps':>5} {'ready':>8} {'median ms':>10} {'p95 ms':>8} {'round trips':>12}")
    for r in results:
        print(
            f"{r['apps']:>5} {r['ready']:>8} {r['median_ms']:>10.3f} {r['p95_ms']:>8.3f} "
            f"{r['round_trips_per_admission']:>12.2f}"
        )
    print()
    for apps in (1, 10, 100):
        flat = by[(apps, 100_000)]["median_ms"] / by[(apps, 1_000)]["median_ms"]
        print(f"{apps:>3} apps: time(100k ready) / time(1k ready) = {flat:.2f}  (bound 1.3)")
    for apps in (10, 100):
        growth = by[(apps, 100_000)]["median_ms"] / by[(1, 100_000)]["median_ms"]
        print(f"{apps:>3} apps vs 1: time x{growth:.1f} (linear would be x{apps})")


if __name__ == "__main__":
    main()
