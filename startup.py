"""What every entry point does first: its settings, or one line saying why not.

Pydantic's own message shows the value it refused, which for a malformed key
is the key itself, under a traceback. Here a refusal is one line on stderr
that names the environment variable, never echoes a secret's value, and
exits with status 2. Production mode also checks that the program has the
credentials it cannot run safely without.
"""

from __future__ import annotations

import ipaddress
import re
import sys
import typing
from collections.abc import Iterable
from typing import Any

from pydantic import AliasChoices, SecretStr, ValidationError
from pydantic_settings import SettingsError

from settings import Settings, env_names

CONFIG_EXIT = 2

# Per program, what production mode needs: each group is satisfied by any one
# of its settings being set.
# The card token key only where tokens are sealed (the API) or opened (the
# payments service's worker and handlers): no other process holds it.
PRODUCTION_NEEDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "api": (
        ("api_read_keys", "api_order_keys", "api_admin_keys"),
        ("payload_codec_key",),
        ("card_token_key",),
    ),
    "worker": (("payload_codec_key",),),
    "payments": (("card_token_key",),),
}


class ConfigError(Exception):
    """Settings that do not load, already said in one line fit to show."""


def load_settings(program: str, needs: str | None = None, **overrides: Any) -> Settings:
    """The settings, or exit 2 with one line on stderr (`<program>: <what is wrong>`).

    `needs` names the PRODUCTION_NEEDS entry the program must meet.
    """
    try:
        return checked_settings(needs, **overrides)
    except ConfigError as err:
        print(f"{program}: {err}", file=sys.stderr)
        raise SystemExit(CONFIG_EXIT) from None


def require(settings: Settings, program: str, needs: str) -> None:
    """Exit 2 as load_settings does unless `settings` meet `needs` (known only once parsed)."""
    missing = production_gaps(settings, needs)
    if missing:
        print(f"{program}: {missing}", file=sys.stderr)
        raise SystemExit(CONFIG_EXIT)


def checked_settings(needs: str | None = None, **overrides: Any) -> Settings:
    try:
        settings = Settings(**overrides)
    except ValidationError as err:
        raise ConfigError(describe(err)) from None
    except SettingsError as err:
        raise ConfigError(_parse_failure(err)) from None
    missing = production_gaps(settings, needs) or (needs == "api" and open_api_exposed(settings))
    if missing:
        raise ConfigError(missing)
    return settings


def open_api_exposed(settings: Settings) -> str:
    """Dev mode without keys is open to every caller: only on loopback is that fine."""
    keys = settings.api_read_keys or settings.api_order_keys or settings.api_admin_keys
    if settings.environment != "dev" or keys or _is_loopback(settings.api_host):
        return ""
    return (
        f"SAGA_API_HOST={settings.api_host} would serve an API open to every caller (dev mode,"
        " no key set): set SAGA_API_ADMIN_KEYS or SAGA_API_ORDER_KEYS, or listen on 127.0.0.1"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def production_gaps(settings: Settings, needs: str | None) -> str:
    if settings.environment != "production" or needs is None:
        return ""
    unmet = [
        group
        for group in PRODUCTION_NEEDS[needs]
        if not any(getattr(settings, field) for field in group)
    ]
    if not unmet:
        return ""
    wanted = "; and ".join(" or ".join(_variable(f) for f in group) for group in unmet)
    return f"SAGA_ENVIRONMENT=production needs {wanted} (not set)"


def describe(error: ValidationError) -> str:
    return "; ".join(_one(e) for e in error.errors())


def _one(error: Any) -> str:
    if not error["loc"]:  # a rule across settings: its message names the variables
        return str(error["msg"]).removeprefix("Value error, ")
    field = _field_of(str(error["loc"][0]))
    message = str(error["msg"]).removeprefix("Value error, ")
    shown = "" if field is None or is_secret(field) else f" (got {error['input']!r})"
    names = " or ".join(env_names(field)) if field else str(error["loc"][0])
    return f"{names}: {message}{shown}"


def _parse_failure(error: SettingsError) -> str:
    # e.g. a list setting whose value is not JSON; the value itself is not shown.
    found = re.search(r'field "(\w+)"', str(error))
    field = found.group(1) if found else None
    if field is None:
        return "the settings do not parse"
    return f'{" or ".join(env_names(field))}: not valid JSON (a list is written ["a", "b"])'


def _field_of(loc: str) -> str | None:
    """The field an error names: by its name, or by one of its environment aliases."""
    if loc in Settings.model_fields:
        return loc
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices) and loc in alias.choices:
            return name
    return None


def is_secret(field: str) -> bool:
    info = Settings.model_fields.get(field)
    return info is None or SecretStr in _types(info.annotation)


def _types(annotation: Any) -> Iterable[Any]:
    yield annotation
    for arg in typing.get_args(annotation):
        yield from _types(arg)


def _variable(field: str) -> str:
    return env_names(field)[0]
