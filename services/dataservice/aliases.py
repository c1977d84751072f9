"""Product aliases: catalog product ids bound to mapped products, without a restart.

A provider registers a product in the catalog and only then learns its id
(`prd_...`). The aliases file binds such ids to entries of the product mapping:

    aliases:
      prd_5e0b1c9a2f3d4e6a: prd_demo_health

The file is re-read when it changes (checked every ``interval`` seconds), so
binding a newly listed product needs no restart. Aliases can only point at
products the mapping already defines: they never widen what leaves the building.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import tempfile
from pathlib import Path

import yaml

from services.dataservice.datasource import DataSource

logger = logging.getLogger("sluice.dataservice.aliases")


def read_aliases(path: Path, known: set[str]) -> dict[str, str]:
    doc = yaml.safe_load(path.read_text()) or {}
    raw = doc.get("aliases", {}) if isinstance(doc, dict) else {}
    aliases: dict[str, str] = {}
    for alias, target in (raw or {}).items():
        if str(target) not in known:
            logger.error("alias %s → %s ignored: %s is not in the product mapping", alias, target, target)
            continue
        aliases[str(alias)] = str(target)
    return aliases


#: What a catalog product id may look like in the aliases file (no spaces, no YAML syntax).
CATALOG_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


class BindingRefused(ValueError):
    """A binding that would be wrong or would lose the file's other bindings."""


def bind(path: Path, catalog_product_id: str, mapped_id: str, known: set[str]) -> dict[str, str]:
    """Bind one catalog product id to a mapped product, keeping every other binding.

    The file is rewritten whole and atomically (a temporary file renamed over it), so
    the watcher never reads half a file; an unreadable file is refused, never replaced.
    Returns the bindings now in the file.
    """
    if not CATALOG_ID.match(catalog_product_id):
        raise BindingRefused(f"{catalog_product_id!r} is not a catalog product id "
                             "(like prd_5e0b1c9a2f3d4e6a).")
    if mapped_id not in known:
        raise BindingRefused(f"{mapped_id!r} is not in the product mapping; mapped products: "
                             f"{', '.join(sorted(known)) or 'none'}.")
    doc: dict[str, object] = {}
    if path.exists():
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise BindingRefused(f"{path} is not valid YAML ({exc}); fix or remove it first.") from exc
        if not isinstance(loaded, dict) or not isinstance(loaded.get("aliases") or {}, dict):
            raise BindingRefused(f"{path} does not hold an `aliases:` mapping; fix or remove it first.")
        doc = loaded
    aliases = {str(k): str(v) for k, v in dict(doc.get("aliases") or {}).items()}  # type: ignore[call-overload]
    aliases[catalog_product_id] = mapped_id
    doc["aliases"] = aliases
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as out:
        yaml.safe_dump(doc, out, sort_keys=False)
    os.replace(tmp, path)
    return aliases


class AliasWatcher:
    def __init__(self, source: DataSource, path: str, interval: float = 2.0) -> None:
        self.source = source
        self.path = Path(path)
        self.interval = interval
        self._mtime: float | None = None

    def reload_if_changed(self) -> bool:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            mtime = None
        if mtime == self._mtime:
            return False
        self._mtime = mtime
        try:
            aliases = read_aliases(self.path, set(self.source.products)) if mtime is not None else {}
        except (OSError, yaml.YAMLError) as exc:
            logger.error("cannot read product aliases from %s (%s); keeping the old ones", self.path, exc)
            return False
        self.source.aliases = aliases
        logger.info("product aliases loaded from %s: %d", self.path, len(aliases))
        return True

    async def run(self) -> None:
        while True:
            self.reload_if_changed()
            await asyncio.sleep(self.interval)
