"""The standalone verifier against a live (in-process) audit service, honest and tampered."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from services.access.runtime import AccessState
from services.audit.runtime import AuditState
from services.audit.verify import run, verify_log
from services.audit.verifylib import NoteSigner
from shared.migrations import upgrade
from tests.audit.conftest import make_event, post_events, sign_checkpoint
from tests.conftest import AppFactory
from tests.support import (
    PG_DB_PREFIX,
    DatabaseTemplates,
    RunningApp,
    TestKeys,
    migrations_dir,
    recreate_pg_database,
    run_app,
)

PG_TRIGGERS = {
    "row": "CREATE TRIGGER events_append_only_row BEFORE UPDATE OR DELETE ON events "
           "FOR EACH ROW EXECUTE FUNCTION append_only_reject('the audit log')",
    "stmt": "CREATE TRIGGER events_append_only_stmt BEFORE UPDATE OR DELETE OR TRUNCATE ON events "
            "FOR EACH STATEMENT EXECUTE FUNCTION append_only_reject('the audit log')",
}


async def behind_the_service(svc: RunningApp, sql: str) -> None:
    """Change the events table directly, dropping its append-only triggers
    first (on PostgreSQL they are put back in the same transaction, so other
    tests sharing the database keep them)."""
    async with svc.db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            for kind in PG_TRIGGERS:
                await conn.execute(text(f"DROP TRIGGER events_append_only_{kind} ON events"))
            await conn.execute(text(sql))
            for ddl in PG_TRIGGERS.values():
                await conn.execute(text(ddl))
        else:
            await conn.execute(text("DROP TRIGGER events_no_update"))
            await conn.execute(text("DROP TRIGGER events_no_delete"))
            await conn.execute(text(sql))


@pytest.fixture
async def logged(audit: RunningApp, service_headers) -> RunningApp:
    for k in range(3):
        await post_events(audit, service_headers, [make_event(10 * k + i) for i in range(10)])
    await sign_checkpoint(audit)
    return audit


def regulator_token(test_keys: TestKeys) -> str:
    return test_keys.token(roles=["regulator"], org="org_reg", sub="cli_reg")


async def test_honest_log_verifies(logged: RunningApp, test_keys: TestKeys) -> None:
    report = await verify_log(logged.client, token=regulator_token(test_keys))
    assert report.ok, report.failures
    assert report.checkpoint is not None and report.checkpoint.tree_size == 30
    assert any("root equals the signed root" in c for c in report.checks)


async def test_partial_range_is_checked_with_inclusion_proofs(logged: RunningApp, test_keys: TestKeys) -> None:
    report = await verify_log(logged.client, token=regulator_token(test_keys), start=5, end=12)
    assert report.ok, report.failures
    assert any("events 5..11" in c and "inclusion proof" in c for c in report.checks)


async def test_changed_event_is_reported_by_seq(logged: RunningApp, test_keys: TestKeys) -> None:
    await behind_the_service(logged, "UPDATE events SET action = 'orders.order.refunded' WHERE seq = 13")
    report = await verify_log(logged.client, token=regulator_token(test_keys))
    assert not report.ok
    assert any("event seq 13" in f and "changed" in f for f in report.failures), report.failures
    assert not any("event seq 12 " in f for f in report.failures)
    partial = await verify_log(logged.client, token=regulator_token(test_keys), start=10, end=20)
    assert any("event seq 13" in f for f in partial.failures)


async def test_changed_details_are_reported(logged: RunningApp, test_keys: TestKeys) -> None:
    await behind_the_service(logged, "UPDATE events SET outcome = 'denied' WHERE seq = 0")
    report = await verify_log(logged.client, token=regulator_token(test_keys))
    assert any("event seq 0 " in f for f in report.failures), report.failures


async def test_removed_event_is_reported(logged: RunningApp, test_keys: TestKeys) -> None:
    await behind_the_service(logged, "DELETE FROM events WHERE seq = 7")
    report = await verify_log(logged.client, token=regulator_token(test_keys))
    assert report.failures == ["expected seq 7 but the log served seq 8: events missing"]


async def test_wrong_pinned_key_fails_the_signature(logged: RunningApp, test_keys: TestKeys) -> None:
    other = NoteSigner.generate("sluice.dev/audit-log").verifier().vkey
    report = await verify_log(logged.client, token=regulator_token(test_keys), public_key=other)
    assert report.failures and "does not verify" in report.failures[0]


async def test_forked_history_is_not_consistent_with_the_saved_checkpoint(
    service_app: AppFactory, service_headers, test_keys: TestKeys, backend: str,
    db_templates: DatabaseTemplates, tmp_path: Path,
) -> None:
    """Two logs under the same key with different histories: a checkpoint
    saved from one is inconsistent with the other (a fork), or larger (a rollback)."""
    signer = NoteSigner.generate("sluice.dev/audit-log")
    if backend == "sqlite":
        fork_url = db_templates.fresh_sqlite("audit", tmp_path)
    else:
        fork_url = recreate_pg_database(f"{PG_DB_PREFIX}_audit_fork")
        upgrade(migrations_dir("audit"), fork_url)
    async with service_app("audit", checkpoint_key=signer.skey) as honest, \
            run_app("audit", fork_url, keys=test_keys, checkpoint_key=signer.skey) as forked:
        await post_events(honest, service_headers, [make_event(i) for i in range(6)])
        saved = (await sign_checkpoint(honest))["note"]
        await post_events(forked, service_headers, [make_event(i) for i in range(9)])
        await sign_checkpoint(forked)
        report = await verify_log(forked.client, token=None, public_key=signer.verifier().vkey,
                                  saved_checkpoint=saved)
        assert any("NOT consistent" in f for f in report.failures), report.failures
        await post_events(honest, service_headers, [make_event(i) for i in range(10, 20)])
        big = (await sign_checkpoint(honest))["note"]
        report = await verify_log(forked.client, token=None, public_key=signer.verifier().vkey,
                                  saved_checkpoint=big)
        assert any("the log shrank" in f for f in report.failures), report.failures


async def test_command_saves_the_checkpoint_and_checks_consistency_next_time(
    logged: RunningApp, service_headers, test_keys: TestKeys, tmp_path: Path, capsys
) -> None:
    transport = httpx.ASGITransport(app=logged.app)
    vkey = (await logged.client.get("/v1/public-key")).json()["verifier_key"]
    saved = tmp_path / "checkpoint.txt"
    argv = ["--url", "http://audit.test", "--public-key", vkey, "--checkpoint-file", str(saved),
            "--token", regulator_token(test_keys)]
    assert await run(argv, transport) == 0
    assert saved.read_text().startswith("sluice.dev/audit-log\n30\n")
    assert "OK: the audit log verifies (tree size 30)" in capsys.readouterr().out
    await post_events(logged, service_headers, [make_event(i) for i in range(50, 55)])
    await sign_checkpoint(logged)
    assert await run(argv, transport) == 0
    out = capsys.readouterr().out
    assert "consistency: tree " in out and "extends the saved tree 30" in out
    await behind_the_service(logged, "UPDATE events SET subject_id = 'ord_forged' WHERE seq = 2")
    assert await run(argv, transport) == 1
    out = capsys.readouterr().out
    assert "FAIL  event seq 2 " in out and "FAILED:" in out


async def test_a_run_that_checked_less_than_asked_says_so_and_exits_3(
    logged: RunningApp, test_keys: TestKeys, capsys
) -> None:
    """No pinned key and no token: only the checkpoint, signed by a key the log itself served,
    was checked. That is not "OK"."""
    transport = httpx.ASGITransport(app=logged.app)
    assert await run(["--url", "http://audit.test"], transport) == 3
    out = capsys.readouterr().out
    # The verdict line, not the substring: a base64 root hash in the output may contain "OK".
    assert not any(line.startswith("OK") for line in out.splitlines()) and "INCOMPLETE" in out
    assert "LESS  not verified: no --public-key pinned" in out
    assert "LESS  not verified: no token: no event was re-downloaded" in out
    # Asked for more events than the log holds: named, and not OK either.
    vkey = (await logged.client.get("/v1/public-key")).json()["verifier_key"]
    argv = ["--url", "http://audit.test", "--public-key", vkey, "--token", regulator_token(test_keys)]
    assert await run([*argv, "--end", "40"], transport) == 3
    assert "events 30..39 were not checked" in capsys.readouterr().out
    # The control: the same asked within the log is fully verified; --allow-partial accepts less.
    assert await run([*argv, "--end", "30"], transport) == 0
    assert "OK: the audit log verifies (tree size 30)" in capsys.readouterr().out
    assert await run(["--url", "http://audit.test", "--allow-partial"], transport) == 0
    out = capsys.readouterr().out
    assert "partial by choice: 2 not verified" in out and "note  not verified: no token" in out


async def test_command_without_a_reachable_service_exits_2(tmp_path: Path, capsys) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    code = await run(["--url", "http://audit.test", "--token", "t"], httpx.MockTransport(refuse))
    assert code == 2
    assert "could not reach the audit service" in capsys.readouterr().err


class HostRouter(httpx.AsyncBaseTransport):
    """Routes requests to in-process apps by host name."""

    def __init__(self, apps: dict[str, object]) -> None:
        self.transports = {host: httpx.ASGITransport(app=app) for host, app in apps.items()}  # type: ignore[arg-type]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.transports[request.url.host].handle_async_request(request)


async def test_command_gets_a_regulator_token_by_client_credentials(
    service_app: AppFactory, service_headers, capsys
) -> None:
    """The verifier obtains its token from the real access service (client
    credentials) and the audit service accepts it."""
    from shared.auth import StaticKeySource
    from shared.events import new_event
    from tests.access.conftest import OPERATOR_ID, OPERATOR_SECRET, get_token, onboard

    async with service_app("access", bootstrap_client_id=OPERATOR_ID, bootstrap_client_secret=OPERATOR_SECRET,
                           signing_key_bits=2048) as access, service_app("audit") as audit:
        audit.runtime.verifier.keys = StaticKeySource(access.state(AccessState).keys.verification_keys)
        regulator = await onboard(access, await get_token(access, OPERATOR_ID, OPERATOR_SECRET),
                                  "Market Regulator", ["regulator"])
        await audit.state(AuditState).writer.append([
            new_event(service="orders", action="orders.order.paid", subject_type="order", subject_id=f"ord_{i}")
            for i in range(7)
        ])
        await sign_checkpoint(audit)
        router = HostRouter({"access.test": access.app, "audit.test": audit.app})
        vkey = (await audit.client.get("/v1/public-key")).json()["verifier_key"]
        code = await run(["--url", "http://audit.test", "--access-url", "http://access.test", "--public-key", vkey,
                          "--client-id", regulator["client_id"], "--client-secret", regulator["client_secret"]],
                         router)
        out = capsys.readouterr().out
        assert code == 0, out
        assert "events 0..6: recomputed from their contents, the root equals the signed root" in out
