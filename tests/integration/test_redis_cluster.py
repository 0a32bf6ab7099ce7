"""Baton's Redis side on a real Redis Cluster (three masters started for this test):
every script touches the keys of one algorithm only, which share one hash slot, so
the scripts run on cluster-mode ElastiCache without CROSSSLOT errors."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from baton.policy import policy_digest
from baton.queue import AdmissionStop, Policy, SlotConfirmation, TaskQueue
from baton.records import ActiveAttempt, QueuedTask
from baton.runtime import connect_redis

ALGORITHMS = ["ocr", "nlp", "cv", "llm-review", "classify", "keywords"]
APPS = ["contracts", "invoices"]
PREFIX = "baton-cluster-test"
NOT_KEYS = ("base", "ready_prefix")  # the AlgorithmKeys fields that name no key


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int) -> list[int]:
    """Ports whose cluster bus port (+10000) is free too: Redis needs both, so a
    port above 55535 cannot serve a cluster node."""
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < count:
        port = rng.randrange(20_000, 45_000)
        if port not in ports and _bindable(port) and _bindable(port + 10_000):
            ports.append(port)
    return ports


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = shutil.which("redis-server")
    cli = shutil.which("redis-cli")
    if not server or not cli:
        pytest.fail("redis-server and redis-cli are needed for the cluster test")
    workdir: Path = tmp_path_factory.mktemp("redis-cluster")
    ports = _free_ports(3)
    processes = []
    for port in ports:
        node = workdir / str(port)
        node.mkdir()
        processes.append(
            subprocess.Popen(
                [
                    server,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(node / "nodes.conf"),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(node),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    try:
        for port in ports:
            deadline = time.monotonic() + 30
            while True:
                try:
                    redis.Redis(host="127.0.0.1", port=port).ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        for _ in range(600):
            info = redis.Redis(host="127.0.0.1", port=ports[0]).cluster("info")
            if info.get("cluster_state") == "ok":
                break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{ports[0]}/0"
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)


def _every_key(queue: TaskQueue, algorithm: str) -> list[str]:
    """Every key a script of this algorithm may touch: the named ones, the ready queue
    of each app, and a snapshot mark."""
    keys = queue.keys(algorithm)
    named = [getattr(keys, item.name) for item in fields(keys) if item.name not in NOT_KEYS]
    assert len(named) == 10, "a new key: add it to this test's expectations"
    return [*named, *(keys.ready(app) for app in APPS), f"{keys.base}:snapshot:0123456789abcdef"]


def _slot(client: redis.RedisCluster, key: str) -> int:
    # redis-py leaves RedisCluster.keyslot unannotated.
    return int(client.keyslot(key))  # type: ignore[no-untyped-call]


def test_every_script_runs_on_a_cluster_for_algorithms_in_different_slots(
    cluster_url: str,
) -> None:
    client = connect_redis(cluster_url, cluster=True)
    assert isinstance(client, redis.RedisCluster)
    queue = TaskQueue(client, PREFIX)
    slots = {_slot(client, queue.keys(name).running) for name in ALGORITHMS}
    assert len(slots) > 1, "the algorithms should land in different slots"
    nodes = {
        # redis-py leaves RedisCluster.get_node_from_key unannotated.
        client.get_node_from_key(queue.keys(name).running).name  # type: ignore[no-untyped-call]
        for name in ALGORITHMS
    }
    assert len(nodes) > 1, "the algorithms should live on different nodes"

    now = datetime.now(UTC)
    for name in ALGORITHMS:
        assert len({_slot(client, key) for key in _every_key(queue, name)}) == 1, name
        _run_every_script(client, queue, name, now)

    # Every key the scripts left is one of its algorithm's, in its algorithm's slot.
    left = [k.decode() if isinstance(k, bytes) else k for k in client.scan_iter(f"{PREFIX}:*")]
    assert left
    for key in left:
        (owner,) = [name for name in ALGORITHMS if key.startswith(f"{queue.keys(name).base}:")]
        assert _slot(client, key) == _slot(client, queue.keys(owner).running), key
        assert key in _every_key(queue, owner), key
    for name in ALGORITHMS:
        for key in _every_key(queue, name):
            client.delete(key)
    client.close()


def _run_every_script(
    client: redis.RedisCluster, queue: TaskQueue, name: str, now: datetime
) -> None:
    """policy, restore, enqueue, admit, confirm and release (both ways) of one
    algorithm, and the reads and writes around them."""
    keys = queue.keys(name)
    first, second = f"http://{name}.test/a", f"http://{name}.test/b"
    # Two endpoints, weights, a quota and a rate limit: admission reads and writes
    # every key it has.
    policy = Policy(
        capacity=3,
        endpoints=[(first, 2), (second, 2)],
        rate_interval_seconds=0.001,
        rate_burst=100,
        weights={APPS[0]: 2.0},
        limits={APPS[1]: 3},
    )

    def write_policy() -> bool:
        return queue.write_policy(name, policy, policy_digest(policy), 1.0, 1.0)

    assert write_policy()
    assert not write_policy()  # the same policy is not written twice
    running = ActiveAttempt("t-running", 1, name, now + timedelta(hours=1), APPS[0], 1, first)
    restored = queue.restore(name, [running], [], queue.mark_snapshot(name))
    assert restored.rebuilt
    tasks = [
        QueuedTask(f"{name}-{n}", 1, n % 3, now + timedelta(milliseconds=n), APPS[n % 2])
        for n in range(5)
    ]
    assert queue.enqueue(name, tasks) == 5
    assert queue.apps_with_ready_tasks(name) == set(APPS)

    admissions = queue.admit(name, now + timedelta(minutes=1), 10)
    admitted = admissions.slots
    assert len(admitted) == 2  # one slot is held by the restored attempt
    assert admissions.stopped is AdmissionStop.CAPACITY
    assert {slot.endpoint for slot in admitted} <= {first, second}
    slot = admitted[0]
    assert queue.confirm_slot(name, slot, now + timedelta(minutes=5)) is SlotConfirmation.OK
    queue.extend_slot(name, slot.task_id, slot.attempt, now + timedelta(minutes=10))
    assert queue.release(name, slot.task_id, slot.attempt)
    assert queue.running_count(name) == 2
    assert queue.ready_count(name) == 3
    assert queue.inflight_cost(name) == 2

    # The other admission's lease expires: the sweep takes its slot back.
    ((task_id, attempt, score),) = queue.overdue_slots(name, now + timedelta(minutes=2), 10)
    assert (task_id, attempt) == (admitted[1].task_id, admitted[1].attempt)
    assert queue.release_lease(name, task_id, attempt, score)
    assert queue.running(name) == {("t-running", 1): running.deadline}

    # An endpoint cools down and an operator pauses the algorithm.
    queue.cool_down(name, first, now + timedelta(seconds=30))
    assert queue.cooling_until(name, first, now) == now + timedelta(seconds=30)
    queue.hold(name, True)
    assert queue.admit(name, now + timedelta(minutes=1), 10).stopped is AdmissionStop.PAUSED
    state = queue.policy_state(name)
    assert (state.held, state.whole, state.count("inflight")) == (True, True, 1)
    assert set(state.cooldown) == {first}
    assert state.rate_tat > 0
    # Redis loses its data: reconcile puts the running attempt, the queue and the pause back.
    waiting = [task for task in tasks if (task.task_id, task.attempt) in queue.ready_members(name)]
    assert len(waiting) == 3
    client.delete(keys.epoch, keys.hold)
    assert queue.restore(name, [running], waiting, queue.mark_snapshot(name), held=True).rebuilt
    assert queue.policy_state(name).held
    queue.hold(name, False)

    # Another function, which has not seen these apps yet, finds the policy lost.
    client.delete(keys.policy)
    fresh = TaskQueue(client, PREFIX)
    written: list[bool] = []
    again = fresh.admit(
        name, now + timedelta(minutes=1), 1, write_policy=lambda: written.append(write_policy())
    )
    assert written == [True]
    (slot,) = again.slots
    assert slot.endpoint == second  # the first endpoint cools down
    assert fresh.ready_members(name) == queue.ready_members(name)
    assert len(fresh.ready_members(name)) == 2
