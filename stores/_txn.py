"""What the layout needs of a backend: one transaction's key-value operations."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol


class Txn(Protocol):
    """The key-value operations the layout needs; one transaction of a backend."""

    def get(self, table: str, key: bytes) -> bytes | None: ...

    def put(self, table: str, key: bytes, value: bytes) -> None: ...

    def insert(self, table: str, key: bytes, value: bytes) -> bool:
        """Put unless the key exists; False (and nothing written) if it does."""
        ...

    def delete(self, table: str, key: bytes) -> None: ...

    def scan(self, table: str, start: bytes, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Items with key >= ``start`` and starting with ``prefix``, in key order."""
        ...
