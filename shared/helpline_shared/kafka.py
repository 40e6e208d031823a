"""Kafka clients built from settings: the FastStream broker, raw aiokafka kwargs, topic admin.

Consumers never auto-commit: services subscribe with an explicit ack policy (see
:mod:`helpline_shared.consumer`). Producers wait for all in-sync replicas (`acks="all"`);
the idempotent producer is a setting because Tansu lacks it.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.security import (
    BaseSecurity,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)

from helpline_shared import tracing
from helpline_shared.logging import get_logger
from helpline_shared.settings import Settings
from helpline_shared.topics import ALL_TOPICS, Topic


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
    return ssl.create_default_context(cafile=cafile)


def broker_security(settings: Settings) -> BaseSecurity | None:
    """FastStream security object for the configured protocol, or None for PLAINTEXT."""
    context = _ssl_context(settings)
    if settings.kafka_security_protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        username = settings.kafka_sasl_username or ""
        password = (
            settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
        )
        use_ssl = context is not None
        mechanism = settings.kafka_sasl_mechanism or "PLAIN"
        cls = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}
        return cls[mechanism](username, password, ssl_context=context, use_ssl=use_ssl)
    if context is not None:
        return BaseSecurity(ssl_context=context, use_ssl=True)
    return None


def client_kwargs(settings: Settings, client_id: str) -> dict[str, Any]:
    """Keyword arguments for plain aiokafka clients (admin, benchmark, tests)."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "client_id": f"{settings.kafka_client_id}-{client_id}",
        "security_protocol": settings.kafka_security_protocol,
    }
    context = _ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL"):
        kwargs["sasl_mechanism"] = settings.kafka_sasl_mechanism or "PLAIN"
        kwargs["sasl_plain_username"] = settings.kafka_sasl_username
        kwargs["sasl_plain_password"] = (
            settings.kafka_sasl_password.get_secret_value()
            if settings.kafka_sasl_password
            else None
        )
    return kwargs


def build_broker(settings: Settings, service: str, middlewares: Sequence[Any] = ()) -> KafkaBroker:
    """The FastStream broker of one service. Subscribers must choose their own ack policy."""
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=f"{settings.kafka_client_id}-{service}",
        security=broker_security(settings),
        enable_idempotence=settings.kafka_enable_idempotence,
        acks="all",
        linger_ms=5,
        max_batch_size=256 * 1024,
        allow_auto_create_topics=False,
        graceful_timeout=settings.graceful_timeout_s,
        logger=get_logger(f"helpline.{service}.broker"),
        log_level=logging.DEBUG,  # per-batch "Received"/"Processed" lines
        middlewares=tuple(middlewares),
    )


@dataclass(frozen=True)
class OutgoingMessage:
    """One message to publish: bytes in, bytes out, no further serialization."""

    topic: str
    value: bytes
    key: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


async def publish_all(broker: KafkaBroker, messages: Sequence[OutgoingMessage]) -> None:
    """Publish every message and return once the broker acknowledged all of them.

    Sends are pipelined (not awaited one by one); order is kept per partition because one
    producer sends them in sequence. Raises if any send failed: the caller must not commit
    its input then, and a retry republishes (consumers deduplicate on event ids).
    With tracing, each message carries the trace it continues (see :mod:`.tracing`).
    """
    if not messages:
        return
    if tracing.of(broker) is None:
        futures = [
            await broker.publish(m.value, m.topic, key=m.key, headers=m.headers, no_confirm=True)
            for m in messages
        ]
    else:
        futures = []
        for m in messages:
            with tracing.publishing(broker, m.headers, m.key):
                headers = dict(m.headers)  # the middleware writes its `traceparent` into it
                futures.append(
                    await broker.publish(
                        m.value, m.topic, key=m.key, headers=headers, no_confirm=True
                    )
                )
    await asyncio.gather(*futures)


async def create_topics(settings: Settings, topics: Iterable[Topic] = ALL_TOPICS) -> list[str]:
    """Create the registry's missing topics with their settings (see `topic_admin`)."""
    from helpline_shared import topic_admin  # it imports this module

    return await topic_admin.create_topics(settings, topics)


def document_publishers(broker: KafkaBroker, *topics: Topic) -> None:
    """Declare what a service publishes, with payload models, for its AsyncAPI document.

    Publishing itself goes through :func:`publish_all`; these declarations only describe it.
    """
    for topic in topics:
        broker.publisher(
            topic.name,
            schema=topic.model,
            title=f"{topic.name}:publish",
            description=topic.description or f"key: {topic.key}",
        )
