"""Public transparency API: checkpoints, verifier key, inclusion and consistency proofs."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from services.audit.runtime import AuditState
from services.audit.verifylib import (
    NoteSigner,
    b64,
    decode_hashes,
    event_leaf,
    leaf_hash,
    open_checkpoint,
    parse_verifier_key,
    unb64,
    verify_consistency,
    verify_inclusion,
)
from shared.events import StoredEvent
from tests.audit.conftest import make_event, post_events, sign_checkpoint
from tests.audit.test_merkle import mth, naive_path, naive_subproof
from tests.conftest import AppFactory
from tests.support import RunningApp, TestKeys, run_app


async def leaf_hashes_of(svc: RunningApp, headers: dict[str, str]) -> list[bytes]:
    resp = await svc.client.get("/v1/events/export", headers=headers)
    lines = [line for line in resp.text.split("\n") if line]
    return [leaf_hash(event_leaf(StoredEvent.model_validate_json(x).model_dump(mode="json"))) for x in lines]


async def test_transparency_endpoints_need_no_token(audit: RunningApp, service_headers) -> None:
    await post_events(audit, service_headers, [make_event(i) for i in range(3)])
    await sign_checkpoint(audit)
    for path in ("/v1/checkpoint", "/v1/checkpoints", "/v1/public-key",
                 "/v1/proofs/inclusion?leaf_index=0&tree_size=3", "/v1/proofs/consistency?first=1&second=3"):
        assert (await audit.client.get(path)).status_code == 200, path
    assert (await audit.client.get("/v1/events")).status_code == 401


async def test_openapi_says_the_transparency_endpoints_are_public(audit: RunningApp) -> None:
    spec = (await audit.client.get("/openapi.json")).json()
    for path in ("/v1/checkpoint", "/v1/public-key", "/v1/proofs/inclusion", "/v1/proofs/consistency"):
        assert "no token needed" in spec["paths"][path]["get"]["description"]


async def test_first_checkpoint_is_the_signed_empty_tree(audit: RunningApp) -> None:
    key = parse_verifier_key((await audit.client.get("/v1/public-key")).json()["verifier_key"])
    cp = open_checkpoint((await audit.client.get("/v1/checkpoint")).json()["note"], key)
    assert cp.tree_size == 0
    assert cp.root_hash.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


async def test_checkpoint_commits_to_the_events(audit: RunningApp, service_headers, regulator_headers) -> None:
    await post_events(audit, service_headers, [make_event(i) for i in range(11)])
    body = await sign_checkpoint(audit)
    key = parse_verifier_key((await audit.client.get("/v1/public-key")).json()["verifier_key"])
    cp = open_checkpoint(body["note"], key)
    assert (cp.origin, cp.tree_size, b64(cp.root_hash)) == ("sluice.dev/audit-log", 11, body["root_hash"])
    assert cp.root_hash == mth((await leaf_hashes_of(audit, regulator_headers))[:11])


async def test_api_proofs_match_the_reference_for_every_pair(audit: RunningApp, service_headers,
                                                             regulator_headers) -> None:
    n_max = 18  # crosses 16 leaves, so the stored level-4 node is used
    await post_events(audit, service_headers, [make_event(i) for i in range(n_max)])
    hashes = (await leaf_hashes_of(audit, regulator_headers))[:n_max]
    for n in range(1, n_max + 1):
        for m in range(n):
            got = (await audit.client.get(f"/v1/proofs/inclusion?leaf_index={m}&tree_size={n}")).json()
            assert decode_hashes(got["hashes"], "proof") == naive_path(m, hashes[:n])
        for m in range(1, n + 1):
            got = (await audit.client.get(f"/v1/proofs/consistency?first={m}&second={n}")).json()
            assert decode_hashes(got["hashes"], "proof") == naive_subproof(m, hashes[:n], True)


BAD_PROOF_REQUESTS = [
    ("/v1/proofs/inclusion?leaf_index=5&tree_size=5", 400, "leaf-outside-tree"),
    ("/v1/proofs/inclusion?leaf_index=0&tree_size=6", 400, "tree-size-too-large"),
    ("/v1/proofs/inclusion?leaf_index=-1&tree_size=3", 422, "validation-error"),
    ("/v1/proofs/inclusion?leaf_index=x&tree_size=3", 422, "validation-error"),
    ("/v1/proofs/consistency?first=4&second=3", 400, "sizes-out-of-order"),
    ("/v1/proofs/consistency?first=2&second=9", 400, "tree-size-too-large"),
    ("/v1/proofs/consistency?first=0&second=3", 422, "validation-error"),
    ("/v1/checkpoints?cursor=%%%", 400, "invalid-cursor"),
]


async def test_bad_proof_requests_are_problems(audit: RunningApp, service_headers) -> None:
    await post_events(audit, service_headers, [make_event(i) for i in range(5)])
    for path, status, problem in BAD_PROOF_REQUESTS:
        resp = await audit.client.get(path)
        assert resp.status_code == status, path
        assert resp.headers["content-type"] == "application/problem+json"
        assert resp.json()["type"].endswith("/" + problem), path


async def test_checkpoints_while_appending_are_all_consistent(service_app: AppFactory, service_headers) -> None:
    """The timer signs while batches arrive: sizes only grow and every later
    checkpoint is consistent with every earlier one."""
    async with service_app("audit", checkpoint_interval_seconds=0.01) as svc:
        for k in range(15):
            await post_events(svc, service_headers, [make_event(10 * k + i) for i in range(1 + k % 4)])
            await asyncio.sleep(0.015)
        await svc.state(AuditState).checkpointer.run_once()
        key = parse_verifier_key((await svc.client.get("/v1/public-key")).json()["verifier_key"])
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = (await svc.client.get("/v1/checkpoints", params={"limit": 3, **({"cursor": cursor} if cursor else {})})).json()
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                break
        cps = [open_checkpoint(i["note"], key) for i in items]
        sizes = [c.tree_size for c in cps]
        assert sizes == sorted(set(sizes)) and sizes[0] == 0 and sizes[-1] == sum(1 + k % 4 for k in range(15)) and len(sizes) > 3
        for old, new in itertools.pairwise(cps[1:]):
            proof = (await svc.client.get(f"/v1/proofs/consistency?first={old.tree_size}&second={new.tree_size}")).json()
            verify_consistency(old.tree_size, new.tree_size, old.root_hash, new.root_hash,
                               decode_hashes(proof["hashes"], "proof"))


async def test_event_read_carries_a_valid_inclusion_proof(audit: RunningApp, service_headers,
                                                         regulator_headers) -> None:
    await post_events(audit, service_headers, [make_event(i) for i in range(9)])
    await sign_checkpoint(audit)
    await post_events(audit, service_headers, [make_event(99)])  # newer than the checkpoint
    body = (await audit.client.get("/v1/events/4", headers=regulator_headers)).json()
    key = parse_verifier_key((await audit.client.get("/v1/public-key")).json()["verifier_key"])
    cp = open_checkpoint(body["checkpoint"]["note"], key)
    leaf = leaf_hash(event_leaf(StoredEvent.model_validate(body["event"]).model_dump(mode="json")))
    assert b64(leaf) == body["leaf_hash"]
    verify_inclusion(4, cp.tree_size, leaf, decode_hashes(body["inclusion_proof"]["hashes"], "p"), cp.root_hash)
    newest = (await audit.client.get("/v1/events/9", headers=regulator_headers)).json()
    assert newest["inclusion_proof"] is None and newest["checkpoint"]["tree_size"] == 9


async def test_generated_key_survives_a_restart(audit: RunningApp, test_keys: TestKeys) -> None:
    first = (await audit.client.get("/v1/public-key")).json()
    async with run_app("audit", audit.database_url, keys=test_keys) as again:
        assert (await again.client.get("/v1/public-key")).json() == first


async def test_configured_key_signs_checkpoints(service_app: AppFactory, service_headers) -> None:
    signer = NoteSigner.generate("example.com/audit")
    async with service_app("audit", checkpoint_key=signer.skey, log_origin="example.com/audit") as svc:
        served = (await svc.client.get("/v1/public-key")).json()
        assert served["verifier_key"] == signer.verifier().vkey
        await post_events(svc, service_headers, [make_event(1)])
        cp = open_checkpoint((await sign_checkpoint(svc))["note"], signer.verifier())
        assert cp.tree_size == 1 and unb64(served["verifier_key"].split("+", 2)[2])[0] == 1


def test_keygen_prints_a_usable_signer_key(tmp_path) -> None:
    import os
    import subprocess
    import sys

    from services.audit.verifylib import parse_signer_key

    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env["SLUICE_AUDIT_LOG_ORIGIN"] = "example.org/audit"
    out = subprocess.run([sys.executable, "-m", "services.audit", "keygen"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, check=True)
    signer = parse_signer_key(out.stdout.strip())
    assert signer.name == "example.org/audit"
    assert signer.verifier().vkey in out.stderr


async def test_checkpoint_as_a_bare_signed_note(audit: RunningApp, service_headers) -> None:
    await post_events(audit, service_headers, [make_event(1)])
    body = await sign_checkpoint(audit)
    resp = await audit.client.get("/v1/checkpoint", headers={"Accept": "text/plain"})
    assert resp.headers["content-type"].startswith("text/plain")
    assert resp.text == body["note"]
