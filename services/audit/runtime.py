"""The audit service's typed state (the ordered writer, the tree cache, the checkpointer):
built by the :func:`audit_state` lifespan step, reached by routers through :data:`Audit`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from services.audit.checkpoints import Checkpointer, load_signer
from services.audit.log import LogWriter
from services.audit.settings import AuditSettings
from services.audit.tree import TreeCache
from shared.db import Database
from shared.periodic import Periodic
from shared.runtime import runtime_of


@dataclass
class AuditState:
    settings: AuditSettings
    db: Database
    #: Tree nodes already computed, shared by the writer, the checkpointer and the proofs.
    tree_cache: TreeCache
    #: The one ordered writer of the log (requests and the audit service's own reads).
    writer: LogWriter
    checkpointer: Checkpointer


@contextlib.asynccontextmanager
async def audit_state(app: FastAPI) -> AsyncIterator[None]:
    """Lifespan step: the ordered writer, the signer and the checkpoint task."""
    runtime = runtime_of(app)
    settings, db = runtime.settings, runtime.db
    assert isinstance(settings, AuditSettings)
    cache = TreeCache()
    signer = await load_signer(db.sessionmaker, settings)
    checkpointer = Checkpointer(db.sessionmaker, signer, settings.log_origin, cache)
    runtime.set_state(AuditState(settings=settings, db=db, tree_cache=cache,
                                 writer=LogWriter(db.sessionmaker, cache), checkpointer=checkpointer))
    await checkpointer.run_once()  # the first checkpoint exists before the first request
    async with Periodic("audit-checkpoints", checkpointer.run_once, settings.checkpoint_interval_seconds,
                        run_at_start=False).running():
        yield


async def get_audit_state(request: Request) -> AuditState:
    return runtime_of(request.app).state(AuditState)


#: The audit service's state, for routers.
Audit = Annotated[AuditState, Depends(get_audit_state)]
