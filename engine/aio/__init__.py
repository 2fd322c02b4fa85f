"""durably for asyncio hosts: ``durably.aio.Engine`` and ``durably.aio.Client``.

The same workflows, log and guarantees as ``durably.Engine``; the engine runs on trio in
guest mode on the host's running loop (one thread, one process). See docs/embedding.md.
"""

from ._faces import Client as Client, Engine as Engine

__all__ = ["Client", "Engine"]
