"""Optional dependencies: a missing one becomes an error naming the extra to install."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sekiban.errors import MissingExtraError


@contextmanager
def require_extra(extra: str, feature: str) -> Iterator[None]:
    """Wrap the imports of an optional dependency: a third-party module missing inside
    becomes `MissingExtraError` telling how to install `extra` (`feature` names what
    needs it, e.g. "sekiban.stores.postgres"). A `MissingExtraError` from a module
    imported inside is renamed to this feature and extra too."""
    try:
        yield
    except ModuleNotFoundError as error:
        package = (error.name or "").partition(".")[0]
        # A missing sekiban module is a packaging bug, not a missing extra: let it show.
        if package in ("", "sekiban"):
            raise
        raise MissingExtraError(feature, extra, package) from error
