"""Follow escalation outcomes and totals snapshots with confluent-kafka (librdkafka), as a
metrics consumer would, keeping a tally of its own.

    pip install confluent-kafka
    python examples/subscribe_confluent.py [bootstrap servers] [--group NAME]
        [--state tally.json] [--idle-s SECONDS]

It reads `helpline.escalations.outcomes` and `helpline.metrics.snapshots` in its own
consumer group (default `external-tally`; the external principal may use any group named
`external-*`) from the beginning, and prints its tally as JSON when it stops: on Ctrl-C, or
after `--idle-s` seconds with nothing new.

Delivery is at least once: after a restart or a rebalance some events come again. Each
outcome event has an `event_id` (one per case, URL and state); the tally counts each id once.
With `--state`, the tally and the ids seen are saved to that file before the offsets are
committed, so a restart resumes where it stopped and a redelivered event still counts once;
without it, nothing is committed and every run tallies again from the beginning.

The tally, at two levels like the helpline's own totals:
- `url_reports`: each URL of each case (`url_id`), at the latest state it reached;
- `content`: each distinct content a platform was asked about (`escalation_id`, shared by
  every case that reported it), at its latest state, by platform, its decisions and
  takedowns (removed, disabled, already gone), and how many were notified to a platform.
States only move forward (submitted, then needs_manual, then decided or failed): an event
for an earlier state than the one known changes nothing, whatever order events arrive in.
A snapshot is kept only if its `sequence` is higher than the one held.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections import Counter
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message

OUTCOMES = "helpline.escalations.outcomes"
SNAPSHOTS = "helpline.metrics.snapshots"
RANK = {"submitted": 1, "needs_manual": 2, "decided": 3, "failed": 3}
TAKEDOWNS = {"removed", "disabled", "already_gone"}


class Tally:
    """The subscriber's own figures, built from outcome events counted once each."""

    def __init__(self, saved: dict[str, Any] | None = None) -> None:
        saved = saved or {}
        self.seen: set[str] = set(saved.get("seen", []))
        self.duplicates: int = saved.get("duplicates", 0)
        self.url_reports: dict[str, dict[str, Any]] = saved.get("url_reports", {})
        self.content: dict[str, dict[str, Any]] = saved.get("content", {})
        self.snapshot: dict[str, Any] | None = saved.get("snapshot")

    def outcome(self, event: dict[str, Any]) -> None:
        if event["event_id"] in self.seen:
            self.duplicates += 1
            return
        self.seen.add(event["event_id"])
        state = {
            "state": event["state"],
            "decision": event.get("decision"),
            "platform": event["platform"],
        }
        self._advance(self.url_reports, event.get("url_id") or event["escalation_id"], state)
        content = self._advance(self.content, event["escalation_id"], state)
        if event["state"] in ("submitted", "decided"):
            content["notified"] = True

    @staticmethod
    def _advance(table: dict[str, dict[str, Any]], key: str, new: dict[str, Any]) -> dict[str, Any]:
        old = table.get(key)
        if old is None:
            table[key] = {**new, "notified": False}
        elif RANK[new["state"]] > RANK[old["state"]]:
            old.update(new)
        return table[key]

    def snapshot_seen(self, snapshot: dict[str, Any]) -> None:
        if self.snapshot is None or snapshot["sequence"] > self.snapshot["sequence"]:
            self.snapshot = snapshot

    def figures(self) -> dict[str, Any]:
        by_platform: dict[str, Counter[str]] = {}
        for c in self.content.values():
            by_platform.setdefault(c["platform"], Counter())[c["state"]] += 1
        decided = [c for c in self.content.values() if c["state"] == "decided"]
        takedowns = sum(c["decision"] in TAKEDOWNS for c in decided)
        per_platform: dict[str, dict[str, int]] = {}
        for c in decided:
            figures = per_platform.setdefault(c["platform"], {"decisions": 0, "takedowns": 0})
            figures["decisions"] += 1
            figures["takedowns"] += c["decision"] in TAKEDOWNS
        return {
            "events": len(self.seen),
            "duplicates_ignored": self.duplicates,
            "url_reports": {
                "by_state": _sorted(Counter(r["state"] for r in self.url_reports.values())),
                "takedowns": sum(
                    r["state"] == "decided" and r["decision"] in TAKEDOWNS
                    for r in self.url_reports.values()
                ),
            },
            "content": {
                "total": len(self.content),
                "by_state": _sorted(Counter(c["state"] for c in self.content.values())),
                "by_platform": {p: _sorted(s) for p, s in sorted(by_platform.items())},
                "decisions": _sorted(Counter(c["decision"] for c in decided)),
                "takedowns": takedowns,
                "takedown_rate": round(takedowns / len(decided), 4) if decided else None,
                "urls_escalated": sum(c["notified"] for c in self.content.values()),
                "per_platform": dict(sorted(per_platform.items())),
            },
            "latest_snapshot": self.snapshot,
        }

    def save(self, path: str) -> None:
        data = {
            "seen": sorted(self.seen),
            "duplicates": self.duplicates,
            "url_reports": self.url_reports,
            "content": self.content,
            "snapshot": self.snapshot,
        }
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(path + ".tmp", path)  # whole or not at all


def _sorted(counts: Counter[str]) -> dict[str, int]:
    return dict(sorted(counts.items()))


def handle(tally: Tally, message: Message) -> None:
    value = message.value()
    if not value:  # nothing to count
        return
    event = json.loads(value)
    if message.topic() == OUTCOMES:
        tally.outcome(event)
    else:
        tally.snapshot_seen(event)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("servers", nargs="?", default="127.0.0.1:9092")
    parser.add_argument("--group", default="external-tally")
    parser.add_argument("--state", help="file keeping the tally and the event ids seen")
    parser.add_argument("--idle-s", type=float, help="stop after this long with nothing new")
    args = parser.parse_args()

    saved = None
    if args.state and os.path.exists(args.state):
        with open(args.state, encoding="utf-8") as f:
            saved = json.load(f)
    tally = Tally(saved)
    consumer = Consumer(
        {
            "bootstrap.servers": args.servers,
            "group.id": args.group,
            "auto.offset.reset": "earliest",  # a new group starts from the beginning
            "enable.auto.commit": False,  # commit after the tally is saved: at least once
            # A stopped subscriber's partitions go to the others after this long; it also
            # bounds the wait for a first assignment (the dev broker, Tansu, takes about half).
            "session.timeout.ms": 6000,
        }
    )
    last_new = float("inf")  # idle time counts from when partitions are assigned

    def assigned(_: Consumer, partitions: list[Any]) -> None:
        nonlocal last_new
        last_new = time.monotonic()

    consumer.subscribe([OUTCOMES, SNAPSHOTS], on_assign=assigned)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not stopping:
            messages = consumer.consume(num_messages=500, timeout=0.5)
            for message in messages:
                if message.error():
                    raise KafkaException(message.error())
                handle(tally, message)
            if messages:
                last_new = time.monotonic()
                if args.state:  # without a state file nothing is committed: each run
                    tally.save(args.state)  # starts again from the beginning
                    consumer.commit(asynchronous=False)
            elif args.idle_s is not None and time.monotonic() - last_new > args.idle_s:
                break
    finally:
        consumer.close()
    json.dump(tally.figures(), sys.stdout, indent=2, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
