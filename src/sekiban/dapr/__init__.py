"""Aggregates and multi-projections as Dapr virtual actors (needs the `dapr` extra)."""

from sekiban._extras import require_extra

# Every sekiban.dapr module is imported through here, so this one guard covers them all.
with require_extra("dapr", "sekiban.dapr"):
    from sekiban.dapr.actor import DaprAggregateActor, actor_id_for
    from sekiban.dapr.app import create_actor_app
    from sekiban.dapr.executor import DaprSekibanExecutor
    from sekiban.dapr.projector_actor import DaprProjectorActor, projector_actor_id

__all__ = [
    "DaprAggregateActor",
    "DaprProjectorActor",
    "DaprSekibanExecutor",
    "actor_id_for",
    "create_actor_app",
    "projector_actor_id",
]
