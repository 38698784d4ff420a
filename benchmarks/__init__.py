"""sekiban's benchmarks, against the `eventsourcing` package: `python -m benchmarks`.

Run from the repository root; not part of the installed package. Needs the `bench`
extra (eventsourcing, matplotlib, psycopg, rich). One module per idea:

- `domains`: the bank account in sekiban and its twin in eventsourcing;
- `engines`: fresh databases per run (memory, SQLite, PostgreSQL, Cosmos DB);
- `seeding`: long histories written fast, with a snapshot where asked;
- `timing`: repeated timing and peak memory of one call;
- `loads`: load time against history length, snapshot vs full replay;
- `snapshot_sizes`: snapshot bytes raw and compressed, take and restore cost;
- `throughput`: append and replay throughput, store and executor level;
- `suites`: what `python -m benchmarks` runs, its headline figures, the files it writes;
- `loads_report`, `throughput_report`, `plots`: Markdown, JSON and PNG output;
- `environment`, `progress`: the machine and versions; progress bars;
- `stores`, `dapr_latency`: the throughput suite alone; warm Dapr actor latency.
"""
