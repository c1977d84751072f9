"""Generate docs/configuration.md from the services' Settings classes.

    python deploy/local/config_reference.py > docs/configuration.md

Every service's ``services/<name>/settings.py`` defines one subclass of
``shared.settings.ServiceSettings``; each of its fields is an environment
variable ``<env_prefix><FIELD>``. Defaults are the *effective* ones (after the
class computes the empty ones, e.g. the SQLite file and the public URL) of a
process with no ``SLUICE_*`` variables set: the generator reads no environment,
so the output is the same on every machine. Secret defaults are never printed.

``tests/docs/test_configuration_reference.py`` regenerates the page in memory and
fails when the committed file differs, so it cannot go stale.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from shared.settings import DEFAULT_PORTS, ServiceSettings  # noqa: E402

HEADER = """\
# Configuration reference

<!-- GENERATED FILE: do not edit by hand. Regenerate with
     python deploy/local/config_reference.py > docs/configuration.md
     (tests/docs/test_configuration_reference.py fails when it is stale). -->

Generated from the Settings classes (`shared/settings.py` `ServiceSettings` and each
`services/<name>/settings.py`) by `python deploy/local/config_reference.py > docs/configuration.md`.

Every setting is an environment variable `SLUICE_<SERVICE>_<SETTING>` (names are
case-insensitive). The settings every service shares (`DATABASE_URL` … `DB_WORK_MEM`) appear
in each service's table under that service's prefix, because each service reads its own.
Defaults are those of a process with no `SLUICE_*` variable set (`make run` sets a few more in
`var/dev.env`: the operator and service client secrets, the webhook secret and the dataservice's
aliases file). Secrets are shown as *(secret)* or *(unset)*, never their value. Values of type
`dict` or `list` are JSON (for example
`SLUICE_ACCESS_BOOTSTRAP_SERVICE_CLIENTS='{"svc-catalog": "..."}'`).

How they are deployed (ConfigMaps and Secrets) is in [deployment.md](deployment.md#configuration);
operating tasks in [operations.md](operations.md).
"""


def discover() -> list[tuple[str, type[ServiceSettings]]]:
    """(service, Settings class) for every ``services/<name>/settings.py``, in port order."""
    found: list[tuple[str, type[ServiceSettings]]] = []
    for path in sorted((REPO / "services").glob("*/settings.py")):
        name = path.parent.name
        module = importlib.import_module(f"services.{name}.settings")
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if (issubclass(obj, ServiceSettings) and obj is not ServiceSettings
                    and obj.__module__ == module.__name__):
                found.append((name, obj))
    order = list(DEFAULT_PORTS)
    found.sort(key=lambda item: (order.index(item[0]) if item[0] in order else len(order), item[0]))
    return found


def effective_defaults(cls: type[ServiceSettings]) -> ServiceSettings:
    """An instance built from defaults only: no environment, no dotenv, no secrets dir."""

    class Isolated(cls):  # type: ignore[valid-type,misc]
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings,)

    instance: ServiceSettings = Isolated()
    return instance


def type_name(annotation: Any) -> str:
    """A short, readable name for a field's type (`str`, `SecretStr | None`, `dict[str, SecretStr]`)."""
    if annotation is None or annotation is type(None):
        return "None"
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    return getattr(annotation, "__name__", str(annotation))


def is_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return any(is_secret(a) for a in typing.get_args(annotation))


def constraints(field: FieldInfo) -> str:
    """`ge`/`gt`/`le`/`lt` bounds, as the validator enforces them."""
    parts: list[str] = []
    for meta in field.metadata:
        for attr, sign in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤")):
            bound = getattr(meta, attr, None)
            if bound is not None:
                parts.append(f"{sign} {bound}")
    return ", ".join(parts)


def default_text(value: Any, annotation: Any) -> str:
    if value is None:
        return "*(unset)*"
    if is_secret(annotation):
        return "`{}`" if value == {} else "*(secret)*"
    if isinstance(value, str):
        if not value:
            return '`""`'
        if value.startswith(str(REPO)):  # package data: show it relative to the repository
            value = Path(value).relative_to(REPO).as_posix()
        return f"`{value}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, dict | list):
        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def cell(text: str) -> str:
    """One Markdown table cell: one line, `|` escaped (also inside code spans, as GFM
    tables need), and `<`/`>` outside code spans as entities so they are not read as HTML."""
    parts = re.sub(r"\s+", " ", text).strip().split("`")
    for i in range(0, len(parts), 2):  # even parts are outside code spans
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts).replace("|", "\\|")


def env_name(cls: type[ServiceSettings], field_name: str) -> str:
    prefix = str(cls.model_config.get("env_prefix", ""))
    return f"{prefix}{field_name}".upper()


def service_section(name: str, cls: type[ServiceSettings]) -> str:
    values = effective_defaults(cls)
    own = [f for f in cls.model_fields if f not in ServiceSettings.model_fields]
    shared = [f for f in cls.model_fields if f in ServiceSettings.model_fields]
    lines = [
        f"## {name}",
        "",
        f"`{cls.__module__}.{cls.__name__}`, prefix `{cls.model_config.get('env_prefix', '')}`"
        f" ({len(own)} own setting{'s' if len(own) != 1 else ''}, then the shared ones).",
        "",
        "| environment variable | type | default | description |",
        "|---|---|---|---|",
    ]
    for field_name in [*own, *shared]:
        field = cls.model_fields[field_name]
        description = field.description or ""
        bounds = constraints(field)
        if bounds:
            description = f"{description} Allowed: {bounds}."
        lines.append(
            f"| `{env_name(cls, field_name)}` | {cell(f'`{type_name(field.annotation)}`')} | "
            f"{cell(default_text(getattr(values, field_name), field.annotation))} | {cell(description)} |"
        )
    return "\n".join(lines)


def render() -> str:
    sections = [service_section(name, cls) for name, cls in discover()]
    return HEADER + "\n" + "\n\n".join(sections) + "\n"


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
