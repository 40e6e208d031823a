"""`helpline rules check|eval`: validate a rules file; measure rules on the labelled set.

`check [FILE]` prints "ok: version V, N rules, M harm types" and each urgency's decision
deadline (from the rules, or HELPLINE_DEADLINE_<URGENCY>_S) and exits 0, or prints every
problem (each naming its rule and field) and exits 1. `eval` prints per-harm-type precision,
recall, F1 and support, micro-F1 and the urgency confusion table, and with `--baseline` the
baseline's figures and the deltas; `--check-aims` exits 1 when an aim is not met.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from helpline_triage.evaluate import Counts, Report


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rules = sub.add_parser("rules", help="check the triage rules file; measure the rules")
    rsub = rules.add_subparsers(dest="action", required=True)
    check = rsub.add_parser("check", help="validate a rules file (default: the packaged one)")
    check.add_argument("file", nargs="?", type=Path, default=None)
    ev = rsub.add_parser("eval", help="precision and recall on the labelled evaluation set")
    ev.add_argument("--set", dest="set_file", type=Path, default=None, help="JSON-lines set")
    ev.add_argument("--rules", type=Path, default=None, help="rules file (default: packaged)")
    ev.add_argument("--baseline", type=Path, default=None, help="rules file to compare with")
    ev.add_argument("--json", action="store_true", help="print the report as JSON")
    ev.add_argument("--misses", action="store_true", help="list the cases the rules got wrong")
    ev.add_argument(
        "--check-aims",
        action="store_true",
        help="exit 1 unless each critical type's recall >= 0.95 and micro-F1 >= 0.9",
    )


def run(args: argparse.Namespace) -> int:
    if args.action == "check":
        return _check(args.file)
    return _eval(args)


def _check(path: Path | None) -> int:
    from helpline_triage.rules import RulesError, RuleSet

    try:
        rules = RuleSet.load(path)
    except RulesError as exc:
        print(exc, file=sys.stderr)
        return 1
    from helpline_shared.settings import load_settings
    from helpline_triage.deadlines import Deadlines

    n_types = len(rules.file.harm_types)
    print(f"ok: version {rules.version}, {rules.rule_count} rules, {n_types} harm types")
    # The decision deadline each urgency gets now, and whether a setting overrides the rules.
    for line in Deadlines.from_settings(rules, load_settings()).describe():
        print(f"deadline {line}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from helpline_triage.evaluate import default_set_path, evaluate, load_set, report_json
    from helpline_triage.rules import RulesError, RuleSet

    try:
        rules = RuleSet.load(args.rules)
        baseline = RuleSet.load(args.baseline) if args.baseline else None
        cases = load_set(args.set_file or default_set_path())
    except (RulesError, ValueError, OSError) as exc:
        print(exc, file=sys.stderr)
        return 2
    report = evaluate(rules, cases)
    base = evaluate(baseline, cases) if baseline else None
    if args.json:
        print(report_json(report, base))
    else:
        _print(report, base, args.misses)
    return 1 if args.check_aims and report.meets_aims() else 0


def _fmt(now: float, before: float | None) -> str:
    if before is None:
        return f"{now:.3f}"
    delta = now - before
    sign = "+" if delta > 0 else ""
    return f"{now:.3f} ({sign}{delta:.3f})" if abs(delta) >= 0.0005 else f"{now:.3f} (=)"


def _cells(now: Counts, before: Counts | None) -> list[str]:
    return [
        _fmt(now.precision, before.precision if before else None),
        _fmt(now.recall, before.recall if before else None),
        _fmt(now.f1, before.f1 if before else None),
        str(now.support),
    ]


def _print(report: Report, base: Report | None, misses: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    from helpline_triage.evaluate import CRITICAL
    from helpline_triage.ruleset import URGENCIES

    console = Console(highlight=False, width=120)
    title = f"rules {report.rules_version} on {report.cases} cases"
    if base:
        title += f" (deltas against {base.rules_version})"
    table = Table(title=title)
    for col in ("harm type", "precision", "recall", "F1", "support"):
        table.add_column(col, justify="left" if col == "harm type" else "right")
    for h, c in report.per_type.items():
        mark = " *" if h in CRITICAL else ""
        table.add_row(h + mark, *_cells(c, base.per_type[h] if base else None))
    table.add_row("micro", *_cells(report.micro, base.micro if base else None), style="bold")
    console.print(table)
    console.print("* critical type (aim: recall >= 0.95)")
    for r, name in ((report, "rules"), (base, "baseline")):
        if r is None:
            continue
        console.print(f"urgency ({name} {r.rules_version}): gold rows, predicted columns")
        conf = Table()
        conf.add_column("gold \\ predicted")
        for u in URGENCIES:
            conf.add_column(u, justify="right")
        for g in URGENCIES:
            conf.add_row(g, *(str(r.confusion[g][p]) for p in URGENCIES))
        console.print(conf)
        console.print(f"urgency accuracy {r.urgency_accuracy:.3f}")
    unmet = report.meets_aims()
    console.print("aims met" if not unmet else "aims not met: " + "; ".join(unmet))
    if misses:
        for x in report.misses:
            console.print(
                f"{x.id}: gold {','.join(x.gold)} {x.gold_urgency}; "
                f"got {','.join(x.predicted)} {x.predicted_urgency}"
            )
