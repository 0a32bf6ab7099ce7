"""Publishing terminal notifications from the outbox.

The terminal state and its outbox row are written in one transaction; the row is
deleted once SNS accepted the message. A worker that dies in between leaves the row
for the sweep, which publishes it again under the same ``notification_id``.
"""

from __future__ import annotations

from datetime import timedelta

from botocore.exceptions import BotoCoreError, ClientError

from baton import repository as repository_module
from baton.contracts import Notification, NotificationError, ResultLocation
from baton.faults import crash_point
from baton.models import Task
from baton.observability import (
    NOTIFICATIONS_REPUBLISHED,
    QUEUE_WAIT_SECONDS,
    RUN_TIME_SECONDS,
    TASK_OUTCOMES,
    count,
    emit,
    logger,
)
from baton.records import TaskStatus
from baton.runtime import Runtime


def result_location(runtime: Runtime, key: str) -> ResultLocation:
    """Step 17: where the app reads the result (a fresh presigned URL) and the object's
    manifest as S3 reports it. Read from S3 at each publish rather than stored: the
    object of a finished attempt is not written again (only its algorithm could, and
    only while its upload URL lives), so a notification published again carries the
    same manifest; none once a lifecycle rule expired the object. The HeadObject is the
    one the callback already needed (``ResultStore.exists``), so it needs no other
    permission."""
    url, expires_at = runtime.results.download_url(
        key, runtime.clock(), runtime.settings.result_url_ttl_seconds
    )
    manifest = runtime.results.manifest(key)
    return ResultLocation(
        bucket=runtime.results.bucket,
        key=key,
        url=url,
        expires_at=expires_at,
        size=manifest.size if manifest else None,
        content_type=manifest.content_type if manifest else None,
        etag=manifest.etag if manifest else None,
        checksum_sha256=manifest.checksum_sha256 if manifest else None,
    )


def build_notification(runtime: Runtime, task: Task) -> Notification:
    assert task.status.is_terminal
    assert task.notification_id is not None
    assert task.finished_at is not None
    result = None
    error = None
    if task.status == TaskStatus.SUCCEEDED and task.result_key:
        result = result_location(runtime, task.result_key)
    else:
        error = NotificationError(
            code=task.error_code or task.status.value, message=task.error_message or ""
        )
    return Notification(
        notification_id=task.notification_id,
        task_id=task.id,
        app=task.app,
        algorithm=task.algorithm,
        idempotency_key=task.idempotency_key,
        status=task.status.value,  # type: ignore[arg-type]  # terminal, checked above
        attempts=task.attempts,
        result=result,
        error=error,
        metadata=task.meta,
        created_at=task.created_at,
        first_dispatched_at=task.first_dispatched_at,
        finished_at=task.finished_at,
    )


def publish_notification(runtime: Runtime, task_id: str, ended: Task | None = None) -> bool:
    """Steps 15-16: publish the notification of a terminal task unless it is out or being published.

    ``ended`` is the task as the transaction that ended it wrote it: that transaction
    claimed the outbox row for its caller (``Repository._finalize``), so the row is
    neither claimed nor read again. A publisher that dies between SNS and the outbox
    delete leaves a duplicate for the next one, under the same ``notification_id`` for
    consumers to drop.
    """
    if ended is not None:
        task: Task | None = ended
    else:
        now = runtime.clock()
        if not runtime.repository.claim_notification(
            task_id, now, now + timedelta(seconds=repository_module.PUBLISH_CLAIM_SECONDS)
        ):
            return False
        task = runtime.repository.get_task(task_id)
    if task is None or not task.status.is_terminal or task.notified_at is not None:
        return False
    try:
        notification = build_notification(runtime, task)
        crash_point("notify.after_claim")
        runtime.notifier.publish(notification)
    except (BotoCoreError, ClientError) as exc:
        # The task's outcome is recorded; the sweep publishes once the claim lapses
        # (S3 unreachable for the manifest, or SNS for the publish).
        logger.warning(
            "notification not published yet",
            task_id=task.id,
            app=task.app,
            idempotency_key=task.idempotency_key,
            error=type(exc).__name__,
        )
        return False
    crash_point("notify.after_publish")
    runtime.repository.mark_notified(task.id, notification.notification_id, runtime.clock())
    _count_outcome(task)
    logger.info(
        "task finished",
        task_id=task.id,
        app=task.app,
        algorithm=task.algorithm,
        idempotency_key=task.idempotency_key,
        status=task.status.value,
        attempts=task.attempts,
        # not its notification_id: the task's row keeps it, and this line is per task
    )
    return True


def republish_notification(runtime: Runtime, task: Task) -> bool:
    """Steps 15-16 again, for a duplicate message of a final task: the app that lost its
    notification gets it back, with the same ``notification_id`` and every field but a
    fresh presigned URL and ``expires_at``.

    Nothing is written: no second outcome, no outbox row, so any number of duplicates
    stays harmless. An SNS failure is logged and the duplicate still counts as stored
    (the app may send it again); a notification not out yet goes the usual way.
    """
    if task.notified_at is None:
        # Its outbox row is still there: publish that (or leave it to whoever holds it).
        return publish_notification(runtime, task.id)
    try:
        notification = build_notification(runtime, task)
        crash_point("notify.before_republish")
        runtime.notifier.publish(notification)
    except (BotoCoreError, ClientError) as exc:
        logger.warning(
            "notification not published again",
            task_id=task.id,
            app=task.app,
            idempotency_key=task.idempotency_key,
            error=type(exc).__name__,
        )
        return False
    crash_point("notify.after_republish")
    # Not a Tasks<Status> count: the outcome was counted when it happened.
    count(NOTIFICATIONS_REPUBLISHED)
    logger.info(
        "notification published again",
        task_id=task.id,
        app=task.app,
        idempotency_key=task.idempotency_key,
        status=task.status.value,
        notification_id=notification.notification_id,
    )
    return True


def _count_outcome(task: Task) -> None:
    """One outcome, its queue wait and its run time (when it was dispatched at all)."""
    emit(TASK_OUTCOMES[task.status.value], 1, algorithm=task.algorithm, app=task.app)
    if task.first_dispatched_at is None or task.finished_at is None:
        return
    waited = (task.first_dispatched_at - task.created_at).total_seconds()
    ran = (task.finished_at - task.first_dispatched_at).total_seconds()
    emit(QUEUE_WAIT_SECONDS, max(0.0, waited), algorithm=task.algorithm, app=task.app)
    emit(RUN_TIME_SECONDS, max(0.0, ran), algorithm=task.algorithm, app=task.app)


def publish_pending_notifications(runtime: Runtime, limit: int = 500) -> int:
    """Publish what the outbox still holds past the grace period (crashed publishers)."""
    cutoff = runtime.clock() - timedelta(seconds=runtime.settings.notification_grace_seconds)
    published = 0
    for task_id in runtime.repository.unpublished_notifications(cutoff, runtime.clock(), limit):
        published += publish_notification(runtime, task_id)
    return published
