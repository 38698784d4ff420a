"""Write-time checks: nothing is stored that the domain could not read back as it was.

`stored_json(model, ...)` is the model's JSON text, checked before anything is written:
it must decode, through the model's own type, into an equal model. That one check
catches what JSON cannot carry (NaN and ±Infinity become `null`; lone surrogates cannot
be encoded) and what a model does not carry (a field with `exclude=True`, a custom
serializer that loses information, an int read back as a float). Nesting deeper than
`max_depth` containers is refused too: the stored JSON would be hard or impossible to
read back (the JSON parsers on the read path stop at a few hundred levels).

The check costs one `model_validate_json` per payload; everything else (finding the
field path for the message) runs only once something is wrong.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from itertools import accumulate
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from sekiban.errors import UnstorablePayloadError

DEFAULT_MAX_DEPTH = 64
"""How many JSON containers (objects and arrays, the payload's own object counted) a
stored payload may nest."""

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_DEPTH_STEPS = str.maketrans({"{": "\x01", "[": "\x01", "}": "\x02", "]": "\x02"})


def stored_json(model: BaseModel, kind: str, name: str, max_depth: int) -> str:
    """`model`'s JSON text; raises `UnstorablePayloadError` (naming `kind` and `name`,
    e.g. "event" and its registered type name) unless it decodes into an equal model
    and nests at most `max_depth` containers."""
    # The model's serializer and validator themselves: what `model_dump_json` and
    # `model_validate_json` call with these (default) options, without their Python
    # wrappers, about 1.5 µs of every event written.
    model_type = type(model)
    try:
        text = model_type.__pydantic_serializer__.to_json(model).decode()
    except (PydanticSerializationError, RecursionError) as error:
        raise _unstorable(model, kind, name, max_depth, f"cannot be serialized: {error}") from None
    # Brackets inside strings only inflate this count, so under the limit is proof enough.
    if text.count("{") + text.count("[") > max_depth and json_depth(text) > max_depth:
        raise _unstorable(model, kind, name, max_depth, f"nests deeper than {max_depth} levels")
    try:
        decoded = model_type.__pydantic_validator__.validate_json(text)
    except ValidationError as error:
        raise _unstorable(model, kind, name, max_depth, f"does not read back: {error}") from None
    if not _same_scalars(model, decoded):
        different = _difference(model, decoded, "")
        if different is not None:
            raise UnstorablePayloadError(kind, name, *different)
    return text


_SCALARS = frozenset({str, int, bool, float, type(None)})


def _same_scalars(before: BaseModel, after: BaseModel) -> bool:
    """True when both hold equal fields of the same scalar types: the common payload,
    decided in C (`map`, set and dict comparisons) without a Python loop."""
    b, a = before.__dict__, after.__dict__
    types = list(map(type, b.values()))
    return b == a and _SCALARS.issuperset(types) and types == list(map(type, a.values()))


def json_depth(text: str) -> int:
    """How deeply the containers of JSON `text` nest (0 for a scalar), without recursion."""
    steps = _STRING.sub("", text).translate(_DEPTH_STEPS)
    levels = accumulate(1 if c == "\x01" else -1 for c in steps if c in "\x01\x02")
    return max(levels, default=0)


def _unstorable(
    model: BaseModel, kind: str, name: str, max_depth: int, fallback: str
) -> UnstorablePayloadError:
    """The error for `model`, naming the first field at fault when one can be found."""
    path, reason = _find_unstorable(model, "", 1, max_depth) or ("(payload)", fallback)
    return UnstorablePayloadError(kind, name, path, reason)


def _find_unstorable(value: Any, path: str, depth: int, max_depth: int) -> tuple[str, str] | None:
    """(path, reason) of the first value JSON cannot carry faithfully, depth-first."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, f"{value!r} is not a finite number")
    if isinstance(value, str):
        return None if _encodable(value) else (path, "the text holds a lone surrogate")
    children: list[tuple[str, Any]]
    if isinstance(value, BaseModel):
        children = [(_key(path, f), getattr(value, f)) for f in type(value).model_fields]
    elif isinstance(value, Mapping):
        children = []
        for key, item in value.items():
            if isinstance(key, str) and not _encodable(key):
                return _key(path, repr(key)), "the key holds a lone surrogate"
            children.append((_key(path, str(key)), item))
    elif isinstance(value, list | tuple | set | frozenset):
        children = [(f"{path}[{i}]", item) for i, item in enumerate(value)]
    else:
        return None
    if depth > max_depth:
        return path or "(payload)", f"nests deeper than {max_depth} levels"
    for child_path, child in children:
        found = _find_unstorable(child, child_path, depth + 1, max_depth)
        if found is not None:
            return found
    return None


def _difference(before: Any, after: Any, path: str) -> tuple[str, str] | None:
    """(path, reason) of the first place `after` differs from `before`, types included:
    `==` alone would take 1.0 for 1 and True for 1."""
    if type(before) is not type(after):
        return path or "(payload)", f"{before!r} reads back as {after!r}"
    if isinstance(before, BaseModel):
        for field, value in before.__dict__.items():
            found = _difference(value, after.__dict__.get(field), _key(path, field))
            if found is not None:
                return found
        return None
    if isinstance(before, dict):
        if before.keys() != after.keys():
            return path or "(payload)", f"keys {list(before)} read back as {list(after)}"
        for key, value in before.items():
            found = _difference(value, after[key], _key(path, str(key)))
            if found is not None:
                return found
        return None
    if isinstance(before, list | tuple) and len(before) == len(after):
        for i, (value, other) in enumerate(zip(before, after, strict=True)):
            found = _difference(value, other, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    if before != after:
        return path or "(payload)", f"{before!r} reads back as {after!r}"
    return None


def _key(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
