"""``--set key=value`` and ``--grid key=v1,v2``: dotted config keys applied over loaded settings, validated
by the same models as config.yaml (a bad key or value is one ``ConfigError`` naming the flag and key)."""
from __future__ import annotations

from typing import Any

import yaml
from pydantic import ValidationError

from shared.config import ConfigError, Settings


def parse_pairs(items: list[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(flag, item, "expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def apply_overrides(settings: Settings, pairs: dict[str, str], flag: str = "--set") -> Settings:
    if not pairs:
        return settings
    data: dict[str, Any] = settings.model_dump(mode="python", exclude={"env"})
    for key, raw in pairs.items():
        node = data
        parts = key.split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                raise ConfigError(flag, key, "unknown key")
            node = node[p]
        if parts[-1] not in node:
            raise ConfigError(flag, key, "unknown key")
        try:
            node[parts[-1]] = yaml.safe_load(raw) if raw else raw
        except yaml.YAMLError:
            node[parts[-1]] = raw
    try:
        return Settings.model_validate({**data, "env": settings.env})
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or next(iter(pairs))
        raise ConfigError(flag, loc, err["msg"].removeprefix("Value error, ")) from None
