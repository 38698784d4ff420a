"""asyncpg's and the network's errors as sekiban's store errors.

`translate_faults` wraps every public method of the PostgreSQL stores, so no asyncpg,
OS or timeout error reaches a caller. Whether an append's outcome is unknown depends on
where the fault hit: an error the server answered with (a cancelled statement, a
refused login) means its transaction was rolled back; a connection lost while the
statement was out means the commit may have landed and only its reply was lost.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from sekiban._extras import require_extra
from sekiban.errors import StoreAuthenticationError, StoreConnectionError, StoreError
from sekiban.stores.faults import TranslatesFaults, fault

with require_extra("postgres", "sekiban.stores.postgres"):
    import asyncpg

_AUTHENTICATION = (asyncpg.InvalidAuthorizationSpecificationError,)
# The server answered: the statement did not run, or was rolled back.
_REFUSED = (
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.QueryCanceledError,  # statement_timeout, pg_cancel_backend
)
# The connection went away, or never came: the reply, if any, is lost.
_LOST = (asyncpg.PostgresConnectionError, asyncpg.AdminShutdownError, OSError, TimeoutError)


def describe(dsn: str) -> str:
    """'PostgreSQL at host:port/database', without user or password."""
    try:
        parts = urlsplit(dsn)
        where = f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"
    except ValueError:
        return "PostgreSQL"
    return f"PostgreSQL at {where}"


class translate_faults(TranslatesFaults):
    """Raises the driver's errors as sekiban's (see `translate`)."""

    __slots__ = ()


def translate(error: BaseException, where: str, *, writing: bool = False) -> StoreError:
    """The store error for an asyncpg, OS or timeout error (raise it `from error`)."""
    if isinstance(error, _AUTHENTICATION):
        return fault(
            StoreAuthenticationError,
            where,
            error,
            "check the user and password",
            outcome_unknown=False,
        )
    if isinstance(error, _REFUSED):
        return fault(StoreConnectionError, where, error, "try again later", outcome_unknown=False)
    if isinstance(error, asyncpg.InterfaceError):
        # Raised before anything is sent (connection or pool already closed, another
        # operation in progress): nothing was written.
        return fault(StoreConnectionError, where, error, "reconnect", outcome_unknown=False)
    if isinstance(error, _LOST):
        return fault(
            StoreConnectionError,
            where,
            error,
            "check the address and that the server is running",
            outcome_unknown=writing,
        )
    return fault(StoreError, where, error, "see the server's log", outcome_unknown=False)


_TRANSLATED = (
    *_AUTHENTICATION,
    *_REFUSED,
    asyncpg.InterfaceError,
    *_LOST,
    asyncpg.PostgresError,
    asyncpg.InternalClientError,
)


translate_faults.driver_errors = _TRANSLATED
translate_faults.translate = staticmethod(translate)
