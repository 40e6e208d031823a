"""Publish a report onto helpline.reports.submitted with confluent-kafka (librdkafka),
as another system would.

    pip install confluent-kafka
    python examples/publish_confluent.py examples/report.json [bootstrap servers]

Key the message by the report's `report_id`; publishing the same report again is safe
(intake opens no second case). Refused reports appear on helpline.reports.rejected.
"""

import json
import sys

from confluent_kafka import Producer


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else "examples/report.json"
    servers = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1:9092"
    with open(path, encoding="utf-8") as f:
        report = json.load(f)
    producer = Producer(
        {
            "bootstrap.servers": servers,
            "acks": "all",
            # Apache Kafka: leave idempotence on. The embedded dev broker (Tansu) lacks it.
            "enable.idempotence": False,
        }
    )
    errors: list[str] = []

    def delivered(err: object, msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    producer.produce(
        "helpline.reports.submitted",
        value=json.dumps(report).encode(),
        key=str(report["report_id"]).encode(),
        on_delivery=delivered,
    )
    producer.flush(30)
    if errors:
        sys.exit(f"not delivered: {errors}")
    print(f"published report {report['report_id']}")


if __name__ == "__main__":
    main()
