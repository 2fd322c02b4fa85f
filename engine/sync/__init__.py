"""durably for synchronous code: ``durably.sync.Client`` (Django views, Flask handlers,
scripts, Celery tasks). See docs/embedding.md."""

from ._client import Client as Client

__all__ = ["Client"]
