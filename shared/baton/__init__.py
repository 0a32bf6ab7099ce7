"""Baton: an asynchronous scheduler for slow, expensive algorithm jobs on AWS.

The package reads top-down: ``settings``, ``models`` and ``repository``, the Redis
``queue``, the AWS adapters (``storage``, ``notifications``, ``secrets``), the
dispatch client, and the lifecycle operations (``intake``, ``scheduling``,
``sweep``, ``completion``, ``reconcile``). ``runtime`` wires them together once
per cold start.
"""

__version__ = "0.1.0"
