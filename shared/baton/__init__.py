"""Baton: an asynchronous scheduler for slow, expensive algorithm jobs on AWS.

Modules, top-down (each imports only modules above it, except ``cli`` and ``runtime``,
which wire the rest together):

- ``errors``: domain errors, each carrying its HTTP status and code.
- ``faults``: named crash points for the fault-injection tests (no-ops in production).
- ``observability``: the one Powertools Logger, Tracer and Metrics, and every metric's
  name, unit and dimension sets.
- ``records``: task and attempt states, and the records the layers hand each other.
- ``contracts``: every shape that crosses the boundary (messages, requests, answers),
  as the client SDK (``baton_sdk.contracts``) defines them.
- ``input_hygiene``: what any input from outside is checked for (depth, duplicate
  keys), and error descriptions that never echo a value.
- ``registry``, ``apps``: the algorithm registry; the app registry (who may send as an
  app, its share and limits) and how senders and callers are matched.
- ``registries``: the registries in force, re-read from SSM when due.
- ``tokens``: callback tokens and the keyring that signs them.
- ``signing``: the keys that sign dispatch requests (Standard Webhooks), one secret per
  algorithm.
- ``backoff``: retry delays, exponential with equal jitter.
- ``settings``: the environment, validated once; secrets and the registries resolved.
- ``callers``: who asks the status API, and which apps' tasks they may see.
- ``models``, ``database``, ``schema``: the tables, the engine, the Alembic migrations
  (``migrations/``).
- ``repository``: every read and write of the database, one unit of work per method.
- ``queue``: the Redis side (ready queues per app, running sets, the in-flight counts, the
  live policy, the rate limit), with its Lua scripts (``lua/``).
- ``policy``: the scheduling policy each algorithm's admission enforces, built from the
  registries and written to Redis.
- ``storage``, ``notifications``, ``dispatch_client``: S3, SNS and HTTP to the algorithms.
- ``dead_letters``: the intake queue's dead-letter queue: its messages, and moving them back.
- ``runtime``: the collaborators each operation receives, built once per cold start.
- ``outbox``, ``draining``, ``attempts``, ``repair``: publishing notifications, stopping
  an attempt Baton ended at its algorithm (cancel requests; the slot held until the
  service stops or the grace ends), ending an attempt, repairing one algorithm's Redis
  state.
- ``gauges``: the sweep's per-algorithm gauges (backlog, in flight against capacity,
  pauses, the oldest pending age), published once a minute.
- ``rejections``: a task message intake rejects: its reason kept, its app told once.
- ``refusals``: callbacks Baton refused, counted against their attempt for its timeout.
- ``scheduling``, ``cancellation``, ``intake``, ``sweep``, ``completion``, ``reconcile``:
  the lifecycle operations (``cancellation`` also takes the apps' cancel messages);
  ``pausing``: operators pause and resume an algorithm; ``retrying``: operators retry
  final tasks (each retry a new outcome).
- ``waiting``: why a task waits (the rule that holds it, the tasks ahead of it).
- ``status``: a task as the status API answers it, looked up for a caller allowed to see it.
- ``stats``: what operators read: the newest tasks, and per algorithm its backlog, its load
  against its cap, its queue waits, run times and timeouts.
- ``status_api``, ``callback_api``, ``openapi``: the status API's routes, the callback API
  (which serves both), and their OpenAPI document.
- ``deployment``: the schema custom resource; ``tables``: tables for people (rich on a
  terminal where it is installed, plain text otherwise); ``cli``: the console script
  (operators).

The lifecycle (the 17 steps of the design) and where each step lives; every step
function's docstring starts with its step:

1-2    A task message arrives on the intake queue.
       ``intake.ingest_task_batch``
3      The task row is stored, once per ``(app, idempotency_key)``; a batch's tasks in
       one transaction.
       ``intake.store_task_messages``, ``repository.Repository.add_tasks``
       (one message: ``intake.accept_task_message``, ``repository.Repository.add_task``)
4      Pending tasks are read, on the schedule or on an event.
       ``scheduling.promote_pending_tasks``, ``repository.Repository.queue_pending_tasks``
5      They enter the Redis execution queue; a slot is taken only under the cap.
       ``queue.TaskQueue.enqueue`` (enqueue.lua), ``queue.TaskQueue.admit`` (admit.lua)
6      An execution row is written for the attempt; a dispatch round's in one transaction.
       ``repository.Repository.start_attempts``
7-8    The attempt is taken from the queue and sent, signed, to the algorithm.
       ``scheduling.dispatch_ready_tasks``, ``scheduling.dispatch_round``,
       ``dispatch_client.HttpDispatchClient.send``, ``signing.SigningKeyring.dispatch_headers``
9      It waits in the running set, scored by its deadline; overdue attempts are
       removed and the app is told.
       ``queue.TaskQueue.confirm_slot`` (confirm.lua), ``sweep.sweep_overdue_attempts``
10     The execution row records the dispatch; a round's acceptances in one transaction.
       ``repository.Repository.mark_many_accepted``
11     The algorithm writes its result to S3, through a presigned URL.
       ``storage.ResultStore.upload_url``
12     The algorithm calls back.
       ``callback_api.post_callback``, ``completion.complete_attempt``
13-14  The attempt leaves the running set; the records are updated.
       ``attempts.end_attempt``, ``repository.Repository.finish_attempt``,
       ``queue.TaskQueue.release``
15-16  One notification per final task, on SNS.
       ``outbox.publish_notification``, ``notifications.Notifier.publish``
17     The app reads the result from S3.
       ``storage.ResultStore.download_url``

Each function's handler calls one of these: ``functions/intake`` steps 1-3 (then the
fast path, 4-10), ``functions/promote`` 4-5, ``functions/dispatch`` 4-10,
``functions/sweep`` 9 (ending an overdue attempt: 13-16; the cancel requests of
draining attempts, ``draining.drain_attempts``), ``functions/callback`` 12-16.
Reconcile (``reconcile.reconcile_all``, ``repair.repair_algorithm_state``, restore.lua)
is the safety net behind 5 and 9: it rebuilds Redis from the database.
"""

__version__ = "0.1.0"
