"""Platform tokens kept between CLI runs: reused, private, never for a wrong secret."""

from __future__ import annotations

import stat
import time
from pathlib import Path

from sluice.token_cache import MARGIN, TokenCache, cache_dir, enabled


def test_a_saved_token_is_reused_until_a_minute_before_it_expires(tmp_path: Path) -> None:
    cache = TokenCache.for_client("http://a", "cli_1", "sls_secret", tmp_path)
    cache.save({"access_token": "tok", "expires_in": 900})
    token, expires_at = cache.load() or ("", 0.0)
    assert token == "tok" and expires_at > time.time() + 800
    cache.save({"access_token": "old", "expires_in": MARGIN - 1})
    assert cache.load() is None


def test_the_file_is_private(tmp_path: Path) -> None:
    cache = TokenCache.for_client("http://a", "cli_1", "sls_secret", tmp_path / "sluice")
    cache.save({"access_token": "tok", "expires_in": 900})
    assert stat.S_IMODE(cache.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.path.parent.stat().st_mode) == 0o700
    assert "sls_secret" not in cache.path.name and "cli_1" not in cache.path.name


def test_a_wrong_or_rotated_secret_never_finds_the_token(tmp_path: Path) -> None:
    TokenCache.for_client("http://a", "cli_1", "sls_right", tmp_path).save(
        {"access_token": "tok", "expires_in": 900})
    assert TokenCache.for_client("http://a", "cli_1", "sls_wrong", tmp_path).load() is None
    assert TokenCache.for_client("http://other", "cli_1", "sls_right", tmp_path).load() is None


def test_a_damaged_file_is_a_miss(tmp_path: Path) -> None:
    cache = TokenCache.for_client("http://a", "cli_1", "s", tmp_path)
    cache.path.write_text("{not json")
    assert cache.load() is None


def test_location_and_switch_follow_the_environment(tmp_path: Path) -> None:
    assert cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "sluice"
    assert cache_dir({"HOME": str(tmp_path)}) == tmp_path / ".cache" / "sluice"
    assert enabled({}) and not enabled({"SLUICE_TOKEN_CACHE": "0"})
