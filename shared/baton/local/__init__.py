"""Baton on one machine, no Docker and no servers to install.

- ``baton.local.emulator``: ``LocalCloud`` runs the SAM template in-process (``baton local``).
- ``baton.local.demo``: the end-to-end demo on top of it (``baton demo``).

Needs the ``local`` extra (moto, fakeredis with Lua, PyYAML).
"""
