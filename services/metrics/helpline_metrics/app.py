"""Builds the metrics service from settings."""

from __future__ import annotations

from faststream.asgi import AsgiFastStream

from helpline_metrics.http import build_api
from helpline_metrics.prometheus import totals_renderer
from helpline_metrics.snapshots import SnapshotPublisher
from helpline_metrics.usecase import TOPICS, Metrics
from helpline_shared.db import Database
from helpline_shared.settings import Settings
from helpline_shared.topics import METRICS_SNAPSHOTS
from helpline_shared.webapi import Access
from helpline_shared.websession import Sessions
from helpline_shared.wiring import ServiceWiring


def create_app(settings: Settings) -> AsgiFastStream:
    if not settings.database_url:
        raise ValueError("HELPLINE_DATABASE_URL is required to run metrics")
    wiring = ServiceWiring(settings, "metrics", publishes=[METRICS_SNAPSHOTS])
    db = Database(settings.database_url, max_size=settings.database_pool_max)
    wiring.consume(
        *TOPICS,
        process=Metrics(db, wiring.broker, wiring.dead_letters).process,
        description="Folds triaged cases, escalation outcomes and rejections into totals.",
        depends_on=[db.ready],
        background=True,
    )
    snapshots = SnapshotPublisher(
        db,
        wiring.broker,
        interval_s=settings.metrics_snapshot_interval_s,
        debounce_s=settings.metrics_snapshot_debounce_s,
    )
    return wiring.app(
        api=build_api(db, Access(db, settings), Sessions(settings)),
        metrics_extra=totals_renderer(db),
        checks={"database": db.ready},
        on_startup=[db.open],
        after_startup=[snapshots.start],
        on_shutdown=[snapshots.stop],
        after_shutdown=[db.close],
    )
