"""What the browser tests share: Debian's Chromium driven by Playwright (a skip when either
is missing, a failure in CI), one browser per test module, and a page's CSRF token."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def playwright_api() -> Any:
    """Playwright's async API, or a skip (outside CI) when it or chromium is missing."""
    missing = []
    try:
        from playwright import async_api
    except ImportError:
        missing.append("playwright (PyPI)")
    if not shutil.which(CHROMIUM):
        missing.append(f"{CHROMIUM} (Debian's chromium)")
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"required in CI: {', '.join(missing)}")
        pytest.skip(f"not installed: {', '.join(missing)}")
    return async_api


def module_browser() -> Any:
    """A fixture: headless Chromium launched for the test module and closed after it.
    Assign it to `browser` in the module."""

    @pytest.fixture(scope="module")
    async def browser() -> AsyncIterator[Any]:
        async_api = playwright_api()
        async with async_api.async_playwright() as p:
            launched = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                yield launched
            finally:
                await launched.close()

    return browser


def csrf_token(page: str) -> str:
    """The CSRF token a page's form posts back (its hidden `csrf_token` field)."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None, page
    return found.group(1)
