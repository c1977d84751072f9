"""Platform tokens kept between CLI runs, so a script of twenty commands asks for one token
(each token request costs the access service an Argon2id verification of the secret).

Like the gcloud and az CLIs: one file per (access URL, client id, secret), named by a hash of
the three (a rotated or wrong secret never finds the old token), mode 0600 in a 0700 folder
under ``$XDG_CACHE_HOME/sluice`` (default ``~/.cache/sluice``). A token is reused until a
minute before it expires; a cached token the service refuses is dropped and a new one fetched
(:class:`sluice.transport.Transport`). ``SLUICE_TOKEN_CACHE=0`` turns it off.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Seconds before expiry when a cached token is no longer handed out.
MARGIN = 60.0


def cache_dir(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "sluice"


def enabled(env: dict[str, str] | None = None) -> bool:
    env = dict(os.environ) if env is None else env
    return env.get("SLUICE_TOKEN_CACHE", "1").lower() not in ("0", "false", "no", "off")


@dataclass
class TokenCache:
    """One client's cached platform token."""

    path: Path

    @classmethod
    def for_client(cls, access_url: str, client_id: str, secret: str,
                   folder: Path | None = None) -> TokenCache:
        key = hashlib.sha256(f"{access_url}\0{client_id}\0{secret}".encode()).hexdigest()[:40]
        return cls((folder or cache_dir()) / f"token-{key}.json")

    def load(self) -> tuple[str, float] | None:
        """``(token, expires_at)`` when a cached token has more than :data:`MARGIN` left."""
        try:
            data = json.loads(self.path.read_text())
            token, expires_at = str(data["access_token"]), float(data["expires_at"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return (token, expires_at) if expires_at - MARGIN > time.time() else None

    def save(self, answer: dict[str, Any]) -> None:
        """Keep a ``/oauth/token`` answer; a cache that cannot be written is no error."""
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            record = {"access_token": answer["access_token"],
                      "expires_at": time.time() + float(answer.get("expires_in", 300))}
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".token-", suffix=".tmp")
            with os.fdopen(fd, "w") as out:  # mkstemp creates it 0600
                json.dump(record, out)
            os.replace(tmp, self.path)
        except (OSError, KeyError, ValueError):
            return

    def drop(self) -> None:
        try:
            self.path.unlink()
        except OSError:
            return
