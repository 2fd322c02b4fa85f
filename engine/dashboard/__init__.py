"""``durably.dashboard``: a web dashboard over a store, server-rendered (Starlette and
Jinja2), served by ``durably dashboard`` or mounted in an ASGI application.

It is a client of the store: it reads through a ``durably.aio.Client`` and acts through
the operator calls, recorded in the audit trail with who did it. See docs/dashboard.md.
Needs the ``dashboard`` extra: ``pip install 'durably[dashboard]'``.
"""

from ._app import create_app as create_app

__all__ = ["create_app"]
