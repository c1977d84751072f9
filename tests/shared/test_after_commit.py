"""shared.db.after_commit: hooks run once the outermost transaction commits, never after a
rollback, not when a savepoint is released, and once per key."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.db import Database, after_commit


@pytest.fixture
async def db(tmp_path: Path):  # type: ignore[no-untyped-def]
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'hooks.db'}")
    yield database
    await database.dispose()


async def test_hooks_run_after_commit_and_are_dropped_on_rollback(db: Database) -> None:
    ran: list[str] = []
    async with db.sessionmaker() as s:
        async with s.begin():
            after_commit(s, lambda: ran.append("committed"))
            assert ran == []
        assert ran == ["committed"]
        with pytest.raises(ValueError):
            async with s.begin():
                after_commit(s, lambda: ran.append("rolled back"))
                raise ValueError
        async with s.begin():
            pass
    assert ran == ["committed"]


async def test_a_released_savepoint_waits_for_the_outer_commit(db: Database) -> None:
    ran: list[str] = []
    async with db.sessionmaker() as s:
        with pytest.raises(ValueError):
            async with s.begin():
                async with s.begin_nested():
                    after_commit(s, lambda: ran.append("inner"))
                assert ran == []
                raise ValueError
    assert ran == []


async def test_hooks_with_one_key_run_once_and_a_failing_hook_does_not_stop_the_others(db: Database) -> None:
    ran: list[str] = []

    def boom() -> None:
        raise RuntimeError("hook failed")

    async with db.sessionmaker() as s, s.begin():
        for _ in range(3):
            after_commit(s, lambda: ran.append("wake"), key="wake")
        after_commit(s, boom)
        after_commit(s, lambda: ran.append("after the failure"))
    assert ran == ["wake", "after the failure"]
