"""`python -m benchmarks.restore_floor`: what restoring the aggregate list costs per
record, step by step, against the least each step can cost in CPython.

    python -m benchmarks.restore_floor [--records 100000] [--repeat 5]

Builds the state `benchmarks.projection_scale` restores (one `ActiveAccount` aggregate per
record), encodes it as the projection store keeps it, and times, in this process (best
of `--repeat`, microseconds per record):

- the stored bytes inflated and split into lines (`decode_lines`);
- `AggregateMapCodec.load` of those lines, with the cyclic garbage collector running and
  paused (restores pause it, `sekiban.core.gc_pause`);
- the floor: the same objects built by the cheapest means there are, with nothing
  checked: the heads in one `json.loads`, the payloads in one pydantic call, and the
  keys, uuid, id and aggregate of each record through the trusted constructors.

The floor is what any eager restore of these objects pays; the goal of issue 22 (a
restore within the time a catch-up of 1% of the history takes, about 1.1-1.5 us per
record at ten events per record) is below it.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter

from benchmarks.domains import AccountProjector, ActiveAccount, bench_domain
from sekiban.core.aggregate import Aggregate, AggregatePayload
from sekiban.core.fastpaths import trusted_constructor, uuid_from_int
from sekiban.core.gc_pause import gc_paused
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.serialization import Serializer
from sekiban.core.sortable_id import SortableUniqueId
from sekiban.projections.codec import AggregateMapCodec
from sekiban.projections.encoding import CHUNK_BYTES, decode_lines, encode_state

PROG = "python -m benchmarks.restore_floor"
_aggregate = trusted_constructor(Aggregate)
_keys = trusted_constructor(PartitionKeys)


def best_seconds(call: Callable[[], Any], repeat: int, *, paused: bool) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        if paused:
            with gc_paused():
                started = time.perf_counter()
                result = call()
                best = min(best, time.perf_counter() - started)
        else:
            started = time.perf_counter()
            result = call()
            best = min(best, time.perf_counter() - started)
        del result
    return best


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__)
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)

    domain = bench_domain()
    projector = domain.projector(AccountProjector)
    codec = AggregateMapCodec(Serializer(domain), projector)
    state: dict[PartitionKeys, Aggregate[AggregatePayload]] = {}
    for n in range(args.records):
        keys = PartitionKeys.generate("account")
        payload = ActiveAccount(owner="bench", balance=n, transactions=10)
        state[keys] = Aggregate(
            payload, keys, 10, SortableUniqueId.generate(), projector.name, projector.version
        )
    with encode_state(codec.dump(state)) as encoded:
        stored, encoding, digest = encoded.read(), encoded.encoding, encoded.sha256
    chunks = [stored[i : i + CHUNK_BYTES] for i in range(0, len(stored), CHUNK_BYTES)]
    lines = list(decode_lines(chunks, encoding, digest))
    heads = b"[" + b",".join(line.partition(b"\t")[0] for line in lines) + b"]"
    payloads = b"[" + b",".join(line.partition(b"\t")[2] for line in lines) + b"]"
    models = TypeAdapter(list[ActiveAccount])

    def inflate_and_split() -> int:
        return sum(1 for _ in decode_lines(chunks, encoding, digest))

    def floor() -> dict[PartitionKeys, Any]:
        fields = json.loads(heads)
        bodies = models.validate_json(payloads)
        built: dict[PartitionKeys, Any] = {}
        for (keys_text, version, last, _), body in zip(fields, bodies, strict=True):
            root, group, aggregate_id = keys_text.split("@")
            keys = _keys(uuid_from_int(int(aggregate_id.replace("-", ""), 16)), group, root)
            last_id = str.__new__(SortableUniqueId, last)
            built[keys] = _aggregate(body, keys, version, last_id, projector.name, 1)
        return built

    n = args.records
    figures = {
        "inflate and split the lines": best_seconds(inflate_and_split, args.repeat, paused=False),
        "codec.load, collector running": best_seconds(
            lambda: codec.load(lines), args.repeat, paused=False
        ),
        "codec.load, collector paused (a restore)": best_seconds(
            lambda: codec.load(lines), args.repeat, paused=True
        ),
        "floor: the same objects, nothing checked, paused": best_seconds(
            floor, args.repeat, paused=True
        ),
    }
    print(f"{n:,} records, {len(stored) / 1e6:.1f} MB stored, best of {args.repeat}")
    for label, seconds in figures.items():
        print(f"  {label:50s} {seconds * 1000:8.1f} ms  {seconds / n * 1e6:6.2f} us/record")


if __name__ == "__main__":
    main()
