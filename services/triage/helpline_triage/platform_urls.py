"""The platform URL table (`platforms.json`), checked and compiled once for `links`.

The data says, per platform: the domains that belong to it (a host or any of its subdomains),
host groups (the hosts that serve the same pages, keyed by the host the canonical form uses),
its own tracking parameters, and routes. A route is a path pattern on one host group, with
optional query constraints, the kind of content it names and a canonical URL template:

    {"on": "www.tiktok.com", "path": "/@{user:tt_user}/video/{id:num}/**", "kind": "video",
     "canonical": "https://www.tiktok.com/@_/video/{id}"}

`{name:field}` captures a value that must fully match the field's pattern (`fields`); a field
with `fold` is case-insensitive on its platform and is lower-cased; a field's `except` lists
values that are not that field (reserved paths such as `/explore`). Literal path parts match
regardless of letter case. A trailing `/**` accepts any further path. A query constraint
needs its parameter exactly once. `short` marks a link that cannot be expanded without
fetching it; a route without `canonical` keeps the generic form on its group's host.
Loading fails with a ValueError naming the platform and route when the data is inconsistent.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, cast, get_args

from helpline_shared.events import UrlKind

_PLACEHOLDER = re.compile(r"\{(\w+)(?::(\w+))?\}")
_TEMPLATE_NAME = re.compile(r"\{(\w+)\}")
_KINDS = frozenset(get_args(UrlKind))


@dataclass(frozen=True)
class Field:
    pattern: str
    fold: bool
    reserved: frozenset[str]


@dataclass(frozen=True)
class Route:
    platform: str
    on: str
    path: re.Pattern[str]
    query: tuple[tuple[str, re.Pattern[str]], ...]
    fields: dict[str, Field]
    kind: UrlKind
    canonical: str | None
    short: bool

    def match(self, path: str, pairs: list[tuple[str, str]]) -> dict[str, str] | None:
        """The captured values (folded where the field says so), or None when it does not fit."""
        found = self.path.fullmatch(path)
        if found is None:
            return None
        values = found.groupdict()
        for key, pattern in self.query:
            given = [v for k, v in pairs if k == key]
            if len(given) != 1 or (m := pattern.fullmatch(given[0])) is None:
                return None
            values.update(m.groupdict())
        for name, value in values.items():
            field = self.fields[name]
            if value.lower() in field.reserved:
                return None
            if field.fold:
                values[name] = value.lower()
        return values

    def fill(self, values: dict[str, str]) -> str:
        assert self.canonical is not None
        return _TEMPLATE_NAME.sub(lambda m: values[m[1]], self.canonical)


@dataclass(frozen=True)
class Platform:
    slug: str
    tracking: frozenset[str]
    routes: dict[str, tuple[Route, ...]]  # host group -> routes, first match wins


@dataclass(frozen=True)
class PlatformTable:
    version: str
    domains: dict[str, str]  # domain -> platform slug
    groups: dict[str, str]  # exact host -> its group's canonical host
    platforms: dict[str, Platform]
    redirects: dict[tuple[str, str], tuple[str, ...]]  # (host, path) -> target parameters
    tracking: frozenset[str]  # lower-case names removed on every host
    tracking_prefixes: tuple[str, ...]

    def platform_of(self, host: str) -> str | None:
        """The platform owning the host or one of its parent domains."""
        labels = host.split(".")
        for i in range(len(labels) - 1):
            slug = self.domains.get(".".join(labels[i:]))
            if slug:
                return slug
        return None

    def is_tracking(self, name: str, platform: Platform | None) -> bool:
        low = name.lower()
        return (
            low in self.tracking
            or low.startswith(self.tracking_prefixes)
            or (platform is not None and low in platform.tracking)
        )


def _compile(pattern: str, fields: dict[str, Field], used: dict[str, Field]) -> re.Pattern[str]:
    body, tail = (pattern[:-3], "(?:/.*)?") if pattern.endswith("/**") else (pattern, "")
    out, pos = [], 0
    for m in _PLACEHOLDER.finditer(body):
        name, field_name = m[1], m[2] or m[1]
        if field_name not in fields:
            raise ValueError(f"unknown field {field_name!r}")
        if name in used:
            raise ValueError(f"placeholder {name!r} used twice")
        used[name] = fields[field_name]
        out += [re.escape(body[pos : m.start()]), f"(?P<{name}>(?:{fields[field_name].pattern}))"]
        pos = m.end()
    out.append(re.escape(body[pos:]))
    return re.compile("".join(out) + tail, re.IGNORECASE)


def _route(slug: str, raw: dict[str, Any], fields: dict[str, Field], groups: set[str]) -> Route:
    if raw["on"] not in groups:
        raise ValueError(f"unknown host group {raw['on']!r}")
    if raw["kind"] not in _KINDS:
        raise ValueError(f"unknown kind {raw['kind']!r}")
    used: dict[str, Field] = {}
    path = _compile(raw["path"], fields, used)
    query = tuple((k, _compile(v, fields, used)) for k, v in raw.get("query", {}).items())
    canonical = raw.get("canonical")
    if canonical is not None:
        if not canonical.startswith("https://"):
            raise ValueError("canonical is not an https URL template")
        missing = set(_TEMPLATE_NAME.findall(canonical)) - set(used)
        if missing:
            raise ValueError(f"canonical names uncaptured {sorted(missing)}")
    return Route(
        slug,
        raw["on"],
        path,
        query,
        used,
        cast(UrlKind, raw["kind"]),
        canonical,
        bool(raw.get("short", False)),
    )


def build_table(data: dict[str, Any]) -> PlatformTable:
    """The compiled table; raises ValueError naming the platform and route at fault."""
    fields = {
        name: Field(f["pattern"], bool(f.get("fold")), frozenset(f.get("except", ())))
        for name, f in data["fields"].items()
    }
    domains: dict[str, str] = {}
    groups: dict[str, str] = {}
    platforms: dict[str, Platform] = {}
    for slug, p in data["platforms"].items():
        domains.update(dict.fromkeys(p["domains"], slug))
        for canonical_host, hosts in p["hosts"].items():
            groups.update(dict.fromkeys(hosts, canonical_host))
        routes: dict[str, list[Route]] = {g: [] for g in p["hosts"]}
        for i, raw in enumerate(p["routes"]):
            try:
                route = _route(slug, raw, fields, set(p["hosts"]))
            except (KeyError, ValueError, re.error) as exc:
                where = f"platforms.json: {slug} route {i} ({raw.get('path')})"
                raise ValueError(f"{where}: {exc}") from exc
            routes[route.on].append(route)
        tracking = frozenset(t.lower() for t in p.get("tracking", ()))
        platforms[slug] = Platform(slug, tracking, {g: tuple(r) for g, r in routes.items()})
    redirects: dict[tuple[str, str], tuple[str, ...]] = {}
    for r in data["redirects"]:  # several parameters may name the target on one redirector
        for host in r["hosts"]:
            key = (host, r["path"])
            redirects[key] = (*redirects.get(key, ()), r["param"])
    return PlatformTable(
        str(data["version"]),
        domains,
        groups,
        platforms,
        redirects,
        frozenset(t.lower() for t in data["tracking"]["names"]),
        tuple(data["tracking"]["prefixes"]),
    )


@cache
def platform_table() -> PlatformTable:
    """The table shipped in the package, read on first use."""
    text = (resources.files("helpline_triage") / "platforms.json").read_text(encoding="utf-8")
    return build_table(json.loads(text))
