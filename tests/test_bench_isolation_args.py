"""`helpline bench --scenario isolation` refuses, before starting anything, a faulty platform
its workload does not use or no faulty pass; and it tells the faulty platform's URLs from
the others' by their exact host."""

from __future__ import annotations

import json

import pytest

from helpline_cli.bench.isolation import run_isolation
from helpline_cli.bench.passes import URLS, Faults, on_platform, reports
from helpline_shared.settings import Settings


@pytest.mark.parametrize(("faulty", "rounds"), [("myspace", 2), ("whatsapp", 2), ("tiktok", 0)])
async def test_a_faulty_platform_outside_the_workload_is_refused_before_starting(
    faulty: str, rounds: int, capsys: pytest.CaptureFixture[str]
) -> None:
    # No broker or database is configured: starting a stack would fail, not return 2.
    code = await run_isolation(
        Settings(kafka_bootstrap_servers="127.0.0.1:1", database_url=None),
        reports_n=1,
        urls_per_report=1,
        faulty=faulty,
        faults=Faults(),
        backlog=0,
        rounds=rounds,
    )

    assert code == 2
    err = capsys.readouterr().err
    assert (repr(faulty) in err and "--faulty-platform" in err) or (
        rounds < 1 and "--rounds must be at least 1" in err
    )


@pytest.mark.parametrize("faulty", sorted(URLS))
def test_each_workload_url_is_on_exactly_one_platform(faulty: str) -> None:
    urls = [u for p in reports(60, 5, "run") for u in json.loads(p)["urls"]]
    on_it = [u for u in urls if on_platform(u, faulty)]

    assert len(on_it) == len(urls) // len(URLS)
    assert all(sum(on_platform(u, slug) for slug in URLS) == 1 for u in urls)
