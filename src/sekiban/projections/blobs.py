"""Out-of-line storage for large projection states: the `BlobStore` protocol and a
local directory implementation.

A state above `ProjectionOptions.out_of_line_above` is written here under a key made
of the projection's name and the state's SHA-256, and its row in the projection store
keeps only the key, size and digest. A blob is written completely (temporary file,
fsync, rename) before the row names it, so a crash while persisting leaves the previous
row and its blob in place.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Protocol

from sekiban.errors import ConfigurationError

_KEY = re.compile(r"[A-Za-z0-9._-]{1,200}(/[A-Za-z0-9._-]{1,200})?")


class BlobStore(Protocol):
    """Named byte strings, written once and read back as files."""

    async def put(self, key: str, chunks: Iterable[bytes]) -> None:
        """Store the bytes `chunks` yields under `key`, all or nothing."""
        ...

    async def open(self, key: str) -> IO[bytes] | None:
        """The bytes under `key` as a file opened for reading (the caller closes it),
        or None when there is no such blob."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the blob under `key`, if there is one."""
        ...


class DirectoryBlobStore:
    """Blobs as files in a local directory (created if missing).

    Use a directory every process that restores the projection can read: a local disk
    for one host, a shared volume for several.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"DirectoryBlobStore({str(self.path)!r})"

    async def put(self, key: str, chunks: Iterable[bytes]) -> None:
        await asyncio.to_thread(self._put, self._file(key), chunks)

    async def open(self, key: str) -> IO[bytes] | None:
        try:
            return await asyncio.to_thread(self._file(key).open, "rb")
        except FileNotFoundError:
            return None

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._file(key).unlink, missing_ok=True)

    def _file(self, key: str) -> Path:
        # Keys come from projector names and digests; checked so none leaves the directory.
        if not isinstance(key, str) or not _KEY.fullmatch(key) or ".." in key:
            raise ConfigurationError(f"invalid blob key {key!r}")
        return self.path / key

    @staticmethod
    def _put(target: Path, chunks: Iterable[bytes]) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            with temporary.open("wb") as file:
                for chunk in chunks:
                    file.write(chunk)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power loss
        finally:
            os.close(directory)
