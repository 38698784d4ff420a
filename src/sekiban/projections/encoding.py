"""A projection state's stored bytes, written and read as a stream.

Writing: the codec's lines go through zlib into a spooled temporary file that stays in
memory up to `spill_above` bytes and moves to disk past it, with the SHA-256 and size of
the stored bytes computed on the way. Reading: stored chunks are inflated a bounded
piece at a time and split into lines as they come; the digest is checked when the last
chunk has been read. At no point does either side hold the whole JSON document, or the
whole compressed one beyond the spill threshold.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from tempfile import SpooledTemporaryFile
from typing import IO, NoReturn

from sekiban.errors import SnapshotRejectedError
from sekiban.snapshot.types import RejectionReason, SnapshotRejection

JSON_LINES = "jsonl"
ZLIB_JSON_LINES = "zlib+jsonl"
ENCODINGS = (JSON_LINES, ZLIB_JSON_LINES)
DEFAULT_SPILL_BYTES = 8 * 1024 * 1024
DEFAULT_OUT_OF_LINE_BYTES = 4 * 1024 * 1024
"""The largest encoded state a projection store's row holds by default; it is read
whole, so it stays below `DEFAULT_SPILL_BYTES`."""
DEFAULT_MAX_STATE_BYTES = 1024 * 1024 * 1024
"""The largest state (inflated JSON lines) a projection store may hold or restore."""
CHUNK_BYTES = 1024 * 1024


@dataclass(slots=True)
class EncodedState:
    """A state's stored bytes in a spooled temporary file, with their size and digest.

    Close it (or use `with`) to free the file.
    """

    file: IO[bytes]
    encoding: str
    size: int
    raw_size: int
    sha256: str

    def chunks(self, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        """The stored bytes from the start, `chunk_bytes` at a time."""
        self.file.seek(0)
        while chunk := self.file.read(chunk_bytes):
            yield chunk

    def read(self) -> bytes:
        """The stored bytes as one value (for states kept in the store's row)."""
        self.file.seek(0)
        return self.file.read()

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> EncodedState:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def encode_state(
    lines: Iterable[bytes],
    *,
    compression_level: int | None = 6,
    spill_above: int = DEFAULT_SPILL_BYTES,
    max_bytes: int = DEFAULT_MAX_STATE_BYTES,
) -> EncodedState:
    """Write `lines` as the stored bytes of a state (zlib-compressed unless
    `compression_level` is None). A state over `max_bytes` raises
    `SnapshotRejectedError` (too large): it could not be restored."""
    file: IO[bytes] = SpooledTemporaryFile(max_size=spill_above)  # noqa: SIM115 - returned
    compressor = None if compression_level is None else zlib.compressobj(compression_level)
    digest = hashlib.sha256()
    size = raw_size = 0
    pending: list[bytes] = []
    pending_bytes = 0

    def write(data: bytes) -> None:
        nonlocal size
        if compressor is not None:
            data = compressor.compress(data)
        if data:
            digest.update(data)
            file.write(data)
            size += len(data)

    try:
        for line in lines:
            if b"\n" in line:
                raise ValueError(f"a state codec wrote a line holding a newline: {line[:80]!r}")
            pending += (line, b"\n")
            pending_bytes += len(line) + 1
            if pending_bytes >= CHUNK_BYTES:
                raw_size += pending_bytes
                _check_size(raw_size, max_bytes)
                write(b"".join(pending))
                pending, pending_bytes = [], 0
        raw_size += pending_bytes
        _check_size(raw_size, max_bytes)
        write(b"".join(pending))
        if compressor is not None:
            tail = compressor.flush()
            digest.update(tail)
            file.write(tail)
            size += len(tail)
    except BaseException:
        file.close()
        raise
    encoding = JSON_LINES if compressor is None else ZLIB_JSON_LINES
    return EncodedState(file, encoding, size, raw_size, digest.hexdigest())


def decode_lines(
    chunks: Iterable[bytes],
    encoding: str,
    sha256: str,
    *,
    max_bytes: int = DEFAULT_MAX_STATE_BYTES,
) -> Iterator[bytes]:
    """The lines of a stored state, as its chunks arrive.

    Raises `SnapshotRejectedError`: corrupt (bytes that do not inflate, a truncated
    stream, a digest other than `sha256`, an unknown encoding) or too large (inflating
    beyond `max_bytes`, refused as soon as it does).
    """
    if encoding not in ENCODINGS:
        _reject(RejectionReason.CORRUPT, f"unknown state encoding {encoding!r}")
    inflater = zlib.decompressobj() if encoding == ZLIB_JSON_LINES else None
    digest = hashlib.sha256()
    total = 0
    line: list[bytes] = []  # the pieces of a line that has not ended yet
    for chunk in chunks:
        digest.update(chunk)
        for piece in _inflate(inflater, chunk):
            total += len(piece)
            _check_size(total, max_bytes)
            if b"\n" not in piece:
                line.append(piece)
                continue
            first, *lines, last = piece.split(b"\n")
            line.append(first)
            yield b"".join(line)
            yield from lines
            line = [last]
    if inflater is not None and not inflater.eof:
        _reject(RejectionReason.CORRUPT, "truncated compressed state")
    if any(line):
        _reject(RejectionReason.CORRUPT, "state does not end with a complete line")
    if digest.hexdigest() != sha256:
        _reject(RejectionReason.CORRUPT, "state bytes do not match their SHA-256")


def _inflate(inflater: zlib._Decompress | None, chunk: bytes) -> Iterator[bytes]:
    """`chunk` inflated at most `CHUNK_BYTES` at a time (a bomb never lands whole)."""
    if inflater is None:
        yield chunk
        return
    try:
        data = chunk
        while data:
            piece = inflater.decompress(data, CHUNK_BYTES)
            yield piece
            data = inflater.unconsumed_tail
    except zlib.error as error:
        _reject(RejectionReason.CORRUPT, f"state bytes do not inflate: {error}")


def _check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        _reject(RejectionReason.TOO_LARGE, f"state exceeds the limit of {max_bytes} bytes")


def _reject(reason: RejectionReason, detail: str) -> NoReturn:
    raise SnapshotRejectedError(SnapshotRejection(reason, detail))
