"""The optional platforms file (`HELPLINE_PLATFORMS_FILE`): one table per platform, in
TOML, JSON or YAML, read once at start-up as the lowest-precedence source of each
platform's settings (the environment overrides it)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

FILE_ENV = "HELPLINE_PLATFORMS_FILE"


class FileSource(PydanticBaseSettingsSource):
    """The platforms file's tables, below the environment in precedence."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def read_platforms_file(path: Path) -> dict[str, Any]:
    """The file's tables by platform slug; TOML, JSON or YAML by the file's suffix."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{FILE_ENV}: cannot read {path}: {exc.strerror}") from None
    try:
        suffix = path.suffix.lower()
        if suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml  # type: ignore[import-untyped]

            try:
                data = yaml.safe_load(text) or {}
            except yaml.YAMLError as exc:
                # Only the problem and where: the parser's own message quotes the line,
                # which may hold a secret.
                mark = getattr(exc, "problem_mark", None)
                where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
                problem = getattr(exc, "problem", None) or type(exc).__name__
                raise ValueError(
                    f"{FILE_ENV}: {path} is not valid YAML: {problem}{where}"
                ) from None
        else:
            raise ValueError(f"{FILE_ENV}: {path} must end in .toml, .json or .yaml")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{FILE_ENV}: {path} is not valid: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{FILE_ENV}: {path} must hold one table per platform")
    # A file may keep its tables under [platforms.<slug>].
    platforms = data.get("platforms", data.get("PLATFORMS", data))
    if not isinstance(platforms, dict):
        raise ValueError(f"{FILE_ENV}: {path}: 'platforms' must be a table")
    # Names are read whatever their case, as the environment's are ([TikTok], RATE_PER_S).
    return {
        slug: _lowered(table, f"{path}: {slug}") if isinstance(table, dict) else table
        for slug, table in _lowered(platforms, str(path)).items()
    }


def _lowered(table: dict[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = str(key).lower()
        if name in out:
            raise ValueError(f"{FILE_ENV}: {where}: {name!r} is given twice")
        out[name] = value
    return out
