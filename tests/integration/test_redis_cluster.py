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
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from baton.queue import SlotConfirmation, TaskQueue
from baton.records import ActiveAttempt, QueuedTask
from baton.runtime import connect_redis

ALGORITHMS = ["ocr", "nlp", "cv", "llm-review", "classify", "keywords"]


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


def test_every_script_runs_on_a_cluster_for_algorithms_in_different_slots(
    cluster_url: str,
) -> None:
    client = connect_redis(cluster_url, cluster=True)
    assert isinstance(client, redis.RedisCluster)
    queue = TaskQueue(client, "baton-cluster-test")
    # redis-py leaves RedisCluster.keyslot and get_node_from_key unannotated.
    slots = {client.keyslot(queue.keys(name).running) for name in ALGORITHMS}  # type: ignore[no-untyped-call]
    assert len(slots) > 1, "the algorithms should land in different slots"
    nodes = {
        client.get_node_from_key(queue.keys(name).running).name  # type: ignore[no-untyped-call]
        for name in ALGORITHMS
    }
    assert len(nodes) > 1, "the algorithms should live on different nodes"

    now = datetime.now(UTC)
    for name in ALGORITHMS:
        keys = queue.keys(name)
        slots = {client.keyslot(k) for k in (keys.ready, keys.running, keys.epoch)}  # type: ignore[no-untyped-call]
        assert len(slots) == 1
        restored = queue.restore(
            name, [ActiveAttempt("t-running", 1, name, now + timedelta(hours=1))], []
        )
        assert restored.rebuilt
        tasks = [
            QueuedTask(f"{name}-{n}", 1, n % 3, now + timedelta(milliseconds=n)) for n in range(5)
        ]
        assert queue.enqueue(name, tasks) == 5
        admitted = queue.admit(name, 3, now + timedelta(minutes=1), 10)
        assert len(admitted) == 2  # one slot is held by the restored attempt
        task_id, attempt = admitted[0]
        assert (
            queue.confirm_slot(name, task_id, attempt, now + timedelta(minutes=5), 3)
            is SlotConfirmation.OK
        )
        queue.extend_slot(name, task_id, attempt, now + timedelta(minutes=10))
        assert queue.release(name, task_id, attempt)
        assert queue.running_count(name) == 2
        assert queue.ready_count(name) == 3
    for name in ALGORITHMS:
        keys = queue.keys(name)
        client.delete(keys.ready)
        client.delete(keys.running)
        client.delete(keys.epoch)
    client.close()
