"""`helpline url explain`: what triage understands of each URL, one JSON object per line.

It calls the same `helpline_triage.links.understand` the triage service uses, so what it
prints is what triage decides. Nothing is fetched. The exit status is 0 when every URL was
read as a URL, 1 when any was not or there was none.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from typing import TextIO

from helpline_triage.links import extract_urls, understand


def _inputs(args: Iterable[str], stdin: TextIO) -> Iterator[str]:
    """The arguments, with '-' replaced by stdin's lines."""
    for arg in args:
        if arg == "-":
            yield from (line.rstrip("\r\n") for line in stdin)
        else:
            yield arg


def explain(
    args: list[str], *, from_text: bool = False, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout
) -> int:
    """Print one JSON line per URL; 0 when every URL was read as a URL, else 1."""
    if from_text:
        urls = extract_urls("\n".join(_inputs(args, stdin)))
    else:
        urls = [line for line in _inputs(args, stdin) if line.strip()]
    if not urls:
        print("helpline url explain: no URLs given or found", file=sys.stderr)
        return 1
    all_read = True
    for url in urls:
        info = understand(url)
        all_read = all_read and info.is_url
        out.write(json.dumps(info.to_json(), ensure_ascii=False) + "\n")
    return 0 if all_read else 1
