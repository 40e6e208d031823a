"""The credentials each simulated platform expects, and the check of a request's."""

from __future__ import annotations

import base64
import hmac
from collections.abc import Callable, Mapping

from helpline_simulator.platforms import PlatformSpec


def dev_credential(slug: str, name: str) -> str:
    """The development credential `name` of `slug`: what the escalator sends to a
    simulator when no credentials are configured."""
    return {
        "credentials": f"dev-{slug}-credentials",
        "client_id": f"dev-{slug}-client",
        "client_secret": f"dev-{slug}-secret",
    }[name]


def expected_headers(spec: PlatformSpec, expects: Callable[[str, str], str]) -> dict[str, str]:
    """The headers (lower-case names) carrying the platform's credentials in its style."""
    slug = spec.slug
    secret = expects(slug, "credentials")
    if spec.auth == "basic":
        pair = f"{expects(slug, 'client_id')}:{expects(slug, 'client_secret')}"
        return {"authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
    if spec.auth == "api_key":
        return {spec.api_key_header: secret}
    if spec.auth == "client_id_bearer":
        return {"client-id": expects(slug, "client_id"), "authorization": f"Bearer {secret}"}
    scheme = {"bearer": "Bearer", "oauth": "OAuth", "bot": "Bot"}[spec.auth]
    return {"authorization": f"{scheme} {secret}"}


def authorised(
    spec: PlatformSpec, headers: Mapping[str, str], expects: Callable[[str, str], str]
) -> bool:
    """The request carries exactly the credentials the platform expects."""
    return all(
        hmac.compare_digest(headers.get(name, "").encode(), value.encode())
        for name, value in expected_headers(spec, expects).items()
    )
