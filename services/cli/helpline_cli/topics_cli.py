"""`helpline topics check`: does the running cluster match the topic registry?

Prints one line per drift (a missing topic, a partition count or replication lower or higher
than the registry's, a config value that differs) and exits 1 if there is any, else 0.
Settings the broker does not report (Tansu reports only the configs a topic was created
with) are listed as "not reported by the broker": unknown, not matching; `--strict` makes
them fail the check too. A cluster that cannot be asked is neither: one line on stderr
naming the brokers, exit 2, so a script tells "drifted" from "could not check".
"""

from __future__ import annotations

import sys
from collections import defaultdict

from aiokafka.errors import KafkaError

from helpline_shared.settings import Settings
from helpline_shared.topic_admin import Drift, check_topics
from helpline_shared.topics import ALL_TOPICS


def report(
    drifts: list[Drift], unreported: list[tuple[str, str]], checked: int, *, strict: bool
) -> tuple[list[str], int]:
    """The lines to print and the exit code for a check's result."""
    lines = [str(d) for d in drifts]
    by_topic: dict[str, list[str]] = defaultdict(list)
    for topic, setting in unreported:
        by_topic[topic].append(setting)
    lines += [
        f"{topic}: {', '.join(settings)} not reported by the broker"
        for topic, settings in by_topic.items()
    ]
    summary = f"{checked} topic(s) checked: {len(drifts)} drift(s)"
    if unreported:
        summary += f"; {len(unreported)} setting(s) not reported by the broker, so not checked"
    lines.append(summary)
    failed = bool(drifts) or (strict and bool(unreported))
    return lines, 1 if failed else 0


async def check(settings: Settings, *, strict: bool = False) -> int:
    """Run the check against the configured cluster; prints the report, returns the code."""
    try:
        drifts, unreported = await check_topics(settings, ALL_TOPICS)
    except (KafkaError, OSError) as exc:
        servers = settings.kafka_bootstrap_servers
        print(f"topics check: cannot ask the brokers at {servers}: {exc}", file=sys.stderr)
        return 2
    lines, code = report(drifts, unreported, len(ALL_TOPICS), strict=strict)
    print("\n".join(lines))
    return code
