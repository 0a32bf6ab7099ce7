"""Baton on one machine, no Docker and no servers to install: the development tool,
a distribution of its own (``baton-local``, in ``local/``) beside the product.

The product layer builds from ``shared/`` and ships exactly ``baton``; keeping the
emulator and the demo out of it means the product wheel carries no demo documents and
the layer build needs no special case.

- ``baton_local.emulator``: ``LocalCloud`` runs any SAM template in-process (moto for
  AWS, worker processes for the functions), with plug-in profiles for what it cannot
  run itself.
- ``baton_local.profile``: Baton's profile, stand-ins for ElastiCache (fakeredis with
  Lua, or a real Redis) and RDS (SQLite, or a real database).
- ``baton_local.demo``: the end-to-end demo on top of both (``baton demo``).
- ``baton_local.commands``: ``baton local`` and ``baton demo``, added to the ``baton``
  console script through the ``baton.commands`` entry points.
"""
