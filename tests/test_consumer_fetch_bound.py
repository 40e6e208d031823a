"""Every batch consumer asks the broker for at most `kafka_fetch_max_bytes` per fetch: the
bound on what aiokafka holds in memory beyond the batch in hand (the embedded broker
ignores the per-partition bound, so this one is what limits a consumer behind a backlog)."""

from __future__ import annotations

from collections.abc import Sequence

from faststream.kafka import KafkaRouter

from helpline_shared.consumer import ConsumerHealth, Record, batch_subscriber
from helpline_shared.settings import Settings


class _Runner:
    health = ConsumerHealth()

    async def run(self, records: Sequence[Record]) -> None:
        return None


def test_the_fetch_bound_reaches_the_consumer() -> None:
    assert Settings().kafka_fetch_max_bytes == 1024 * 1024
    for background in (False, True):
        router = KafkaRouter()
        batch_subscriber(
            router,
            "helpline.reports.submitted",
            service="bench",
            settings=Settings(kafka_fetch_max_bytes=65536),
            runner=_Runner(),  # type: ignore[arg-type]
            description="a consumer",
            background=background,
        )
        (subscriber,) = router.subscribers
        # FastStream hands these to AIOKafkaConsumer when the subscriber starts.
        assert subscriber._connection_args["fetch_max_bytes"] == 65536  # type: ignore[attr-defined]
