"""sqlite3's errors as sekiban's store errors.

`translate_faults` wraps every public method of the SQLite stores, so no sqlite3 error
reaches a caller. A lock held by another writer for longer than `busy_timeout` is
`StoreBusyError`: SQLite gave up before writing anything. An I/O error during an
append leaves its outcome unknown (the commit may have reached the file); a file that
cannot be opened or written is refused before anything is written.
"""

from __future__ import annotations

import sqlite3

from sekiban.errors import StoreBusyError, StoreConnectionError, StoreError
from sekiban.stores.faults import TranslatesFaults, fault

_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
_UNREACHABLE = (
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_PERM,
    sqlite3.SQLITE_AUTH,
)


def is_busy(error: sqlite3.Error) -> bool:
    """Whether another connection holds the lock `error` waited for."""
    # Extended codes (SQLITE_BUSY_SNAPSHOT, ...) keep the primary code in the low byte.
    code = getattr(error, "sqlite_errorcode", None) or 0  # absent on errors made by hand
    return isinstance(error, sqlite3.OperationalError) and code & 0xFF in _BUSY


class translate_faults(TranslatesFaults):
    """Raises the driver's errors as sekiban's (see `translate`)."""

    __slots__ = ()


def translate(error: sqlite3.Error, where: str, *, writing: bool = False) -> StoreError:
    """The store error for a sqlite3 error (raise it `from error`)."""
    code = (getattr(error, "sqlite_errorcode", None) or 0) & 0xFF
    if is_busy(error):
        return fault(
            StoreBusyError,
            where,
            error,
            "another writer held the lock longer than busy_timeout; nothing was written",
            outcome_unknown=False,
        )
    if code in _UNREACHABLE or isinstance(error, sqlite3.ProgrammingError):
        return fault(
            StoreConnectionError,
            where,
            error,
            "check that the file exists, is writable and that the store is open",
            outcome_unknown=False,
        )
    if code == sqlite3.SQLITE_IOERR:
        return fault(StoreConnectionError, where, error, "check the disk", outcome_unknown=writing)
    return fault(StoreError, where, error, "check the file", outcome_unknown=False)


translate_faults.driver_errors = (sqlite3.Error,)
translate_faults.translate = staticmethod(translate)
