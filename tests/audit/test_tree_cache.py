"""The proof endpoints' memory (services/audit/tree.TreeCache): upper-level node hashes and
the largest size seen. Neither may change an answer."""

from __future__ import annotations

from typing import Any

from services.audit import tree
from services.audit.log import LogWriter
from services.audit.runtime import AuditState
from services.audit.verifylib import b64
from shared.events import AuditEvent
from tests.audit.conftest import make_event, post_events
from tests.support import RunningApp


async def _proof(audit: RunningApp, path: str) -> Any:
    resp = await audit.client.get(path)
    assert resp.status_code == 200, resp.text
    return resp.json()["hashes"]


async def test_proofs_from_cached_nodes_equal_proofs_read_from_storage(audit: RunningApp,
                                                                       service_headers) -> None:
    for start in range(0, 700, 100):
        await post_events(audit, service_headers, [make_event(i) for i in range(start, start + 100)])
    cases = [f"/v1/proofs/inclusion?leaf_index={i}&tree_size={n}" for i, n in ((0, 700), (300, 512), (699, 700))]
    cases += [f"/v1/proofs/consistency?first={m}&second={n}" for m, n in ((256, 700), (513, 600), (1, 700))]
    cold = [await _proof(audit, c) for c in cases]
    cache: tree.TreeCache = audit.state(AuditState).tree_cache
    assert cache.get((8, 0)) is not None  # the first full 256-leaf subtree is now in memory
    warm = [await _proof(audit, c) for c in cases]
    async with audit.db.engine.connect() as conn:
        stored = await tree.inclusion_proof(conn, 300, 512)  # no cache: straight from the tables
    assert warm == cold
    assert cold[1] == [b64(h) for h in stored]


async def test_a_size_beyond_the_log_is_refused_until_another_replica_appends_it(
    audit: RunningApp, service_headers
) -> None:
    await post_events(audit, service_headers, [make_event(i) for i in range(5)])
    too_large = await audit.client.get("/v1/proofs/inclusion?leaf_index=0&tree_size=6")
    assert too_large.status_code == 400
    # Another replica (its own writer, not this app's cache) appends the sixth event.
    other = LogWriter(audit.db.sessionmaker)
    await other.append([AuditEvent.model_validate(make_event(5))])
    assert audit.state(AuditState).tree_cache.known_size == 5
    resp = await audit.client.get("/v1/proofs/inclusion?leaf_index=0&tree_size=6")
    assert resp.status_code == 200, resp.text
    assert audit.state(AuditState).tree_cache.known_size == 6
