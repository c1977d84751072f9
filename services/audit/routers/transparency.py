"""Public transparency data: checkpoints, the verifier key and proofs.

These endpoints need no token: they reveal only hashes and signed tree sizes,
never event contents, and regulators' verifiers (or anyone) must be able to
check the log's consistency without an account.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response

from services.audit import checkpoints, tree
from services.audit.checkpoints import StoredCheckpoint
from services.audit.runtime import Audit, AuditState
from services.audit.schemas import CheckpointOut, ConsistencyProof, InclusionProof, PublicKey
from services.audit.verifylib import b64
from shared.db import DbSession
from shared.errors import BadRequest, NotFound
from shared.pagination import CursorParam, LimitParam, Page, encode_cursor, exact_int, read_cursor
from shared.problems import problem_docs

router = APIRouter(prefix="/v1", tags=["transparency"])

PUBLIC = " Public: no token needed (only hashes and signed tree sizes, never event contents)."


def checkpoint_out(cp: StoredCheckpoint) -> CheckpointOut:
    return CheckpointOut(
        tree_size=cp.tree_size, root_hash=b64(cp.root_hash), key_id=cp.key_id,
        created_at=cp.created_at, note=cp.note,
    )


@router.get(
    "/checkpoint",
    response_model=CheckpointOut,
    summary="The latest signed checkpoint (public)",
    description="The newest C2SP checkpoint the log signed. A new one is signed every few seconds "
    "while events arrive. With `Accept: text/plain` the answer is the bare signed note, as "
    "transparency-log tooling expects." + PUBLIC,
    responses={200: {"content": {"text/plain": {"example": "sluice.dev/audit-log\n5000\n...\n"}}},
               **problem_docs(404)},
)
async def latest_checkpoint(request: Request, session: DbSession) -> CheckpointOut | Response:
    cp = await checkpoints.latest(session)
    if cp is None:
        raise NotFound("No checkpoint has been signed yet; retry in a few seconds.")
    accept = request.headers.get("accept", "")
    if "text/plain" in accept and "application/json" not in accept:
        return PlainTextResponse(cp.note)
    return checkpoint_out(cp)


@router.get(
    "/checkpoints",
    response_model=Page[CheckpointOut],
    summary="Every checkpoint ever signed, oldest first (public)",
    description="History of checkpoints by increasing tree size; cursor pagination." + PUBLIC,
    responses=problem_docs(400),
)
async def list_checkpoints(
    session: DbSession, limit: LimitParam = 50, cursor: CursorParam = None
) -> Page[CheckpointOut]:
    after = read_cursor(cursor, lambda p: exact_int(p["size"]))
    rows = await checkpoints.history(session, after, limit + 1)
    nxt = encode_cursor({"size": rows[limit - 1].tree_size}) if len(rows) > limit else None
    return Page(items=[checkpoint_out(r) for r in rows[:limit]], next_cursor=nxt)


@router.get(
    "/public-key",
    response_model=PublicKey,
    summary="The checkpoint verifier key (public)",
    description="The Ed25519 key that signs checkpoints, in signed-note verifier-key form. "
    "Regulators should compare it with the key the operator published out of band and pin it." + PUBLIC,
)
async def public_key(audit: Audit) -> PublicKey:
    cp = audit.checkpointer
    verifier = cp.signer.verifier()
    return PublicKey(
        origin=cp.origin, key_name=verifier.name, key_id=f"{verifier.key_id:08x}",
        algorithm="ed25519", verifier_key=verifier.vkey,
    )


async def _require_size(audit: AuditState, size: int, name: str) -> None:
    current = await tree.size_at_least(audit.db, size, audit.tree_cache)
    if size > current:
        raise BadRequest(
            f"{name}={size} is larger than the log ({current} events); ask for a size at most "
            f"{current}, e.g. the tree_size of GET /v1/checkpoint.",
            problem="tree-size-too-large",
            title="Tree size too large",
            tree_size=current,
        )


@router.get(
    "/proofs/inclusion",
    response_model=InclusionProof,
    summary="Inclusion proof of one leaf in a tree size (public)",
    description="RFC 9162 §2.1.3 audit path showing leaf `leaf_index` is in the tree of `tree_size` "
    "leaves. Verify it against the root of a signed checkpoint of that size." + PUBLIC,
    responses=problem_docs(400, 422),
)
async def inclusion(
    audit: Audit,
    leaf_index: Annotated[int, Query(ge=0, description="Leaf index (the event's `seq`).")],
    tree_size: Annotated[int, Query(ge=1, description="Tree size, e.g. a checkpoint's.")],
) -> InclusionProof:
    if leaf_index >= tree_size:
        raise BadRequest(
            f"leaf_index {leaf_index} is not in a tree of {tree_size} leaves; "
            "use a leaf_index below tree_size.",
            problem="leaf-outside-tree",
            title="Leaf outside the tree",
        )
    await _require_size(audit, tree_size, "tree_size")
    path = await tree.inclusion_proof(audit.db, leaf_index, tree_size, audit.tree_cache)
    return InclusionProof(leaf_index=leaf_index, tree_size=tree_size, hashes=[b64(h) for h in path])


@router.get(
    "/proofs/consistency",
    response_model=ConsistencyProof,
    summary="Consistency proof between two tree sizes (public)",
    description="RFC 9162 §2.1.4 proof that the tree of `second` leaves extends the tree of "
    "`first` leaves (nothing changed, removed or reordered)." + PUBLIC,
    responses=problem_docs(400, 422),
)
async def consistency(
    audit: Audit,
    first: Annotated[int, Query(ge=1, description="The older (smaller) tree size.")],
    second: Annotated[int, Query(ge=1, description="The newer tree size.")],
) -> ConsistencyProof:
    if first > second:
        raise BadRequest(
            f"first ({first}) is larger than second ({second}); pass the older size as first.",
            problem="sizes-out-of-order",
            title="Sizes out of order",
        )
    await _require_size(audit, second, "second")
    path = await tree.consistency_proof(audit.db, first, second, audit.tree_cache)
    return ConsistencyProof(first=first, second=second, hashes=[b64(h) for h in path])
