"""asyncpg's and the network's errors as sekiban's store errors.

`translate_faults` wraps every public method of the PostgreSQL stores, so no asyncpg,
OS or timeout error reaches a caller. Whether an append's outcome is unknown depends on
where the fault hit: an error the server answered with (a cancelled statement, a
refused login) means its transaction was rolled back; a connection lost while the
statement was out means the commit may have landed and only its reply was lost.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from sekiban._extras import require_extra
from sekiban.errors import StoreAuthenticationError, StoreConnectionError, StoreError
from sekiban.stores.faults import fault

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


@contextmanager
def translate_faults(where: str, *, writing: bool = False) -> Iterator[None]:
    """Raise asyncpg, OS and timeout errors as `StoreAuthenticationError`,
    `StoreConnectionError` or (any other server error) `StoreError`; `writing` says an
    append is in progress, whose outcome a lost connection leaves unknown."""
    try:
        yield
    except _AUTHENTICATION as error:
        raise fault(
            StoreAuthenticationError,
            where,
            error,
            "check the user and password",
            outcome_unknown=False,
        ) from error
    except _REFUSED as error:
        raise fault(
            StoreConnectionError, where, error, "try again later", outcome_unknown=False
        ) from error
    except asyncpg.InterfaceError as error:
        # Raised before anything is sent (connection or pool already closed, another
        # operation in progress): nothing was written.
        raise fault(
            StoreConnectionError, where, error, "reconnect", outcome_unknown=False
        ) from error
    except _LOST as error:
        raise fault(
            StoreConnectionError,
            where,
            error,
            "check the address and that the server is running",
            outcome_unknown=writing,
        ) from error
    except (asyncpg.PostgresError, asyncpg.InternalClientError) as error:
        raise fault(
            StoreError, where, error, "see the server's log", outcome_unknown=False
        ) from error
