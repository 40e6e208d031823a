"""`helpline bench`: the pipeline's throughput and latency beside a raw aiokafka relay.

Both run in the same invocation on the same broker. The baseline is a relay through as
many stages as the pipeline has (intake, triage, escalator): each stage consumes a batch,
validates every message with pydantic, produces it to the next topic and commits. The
pipeline figures run from publishing a report to the last of its URLs' outcomes appearing
on `helpline.escalations.outcomes` (escalation recorded in PostgreSQL, platform called,
outcome published). It prints figures; it passes or fails nothing.
"""

from helpline_cli.bench.run import run_bench

__all__ = ["run_bench"]
