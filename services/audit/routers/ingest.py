"""Ingestion: producers append events (role ``service``)."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import TypeAdapter

from services.audit import fast_batch
from services.audit.log import prepare
from services.audit.runtime import Audit
from services.audit.schemas import AppendResponse, EventBatch
from shared.auth import Service
from shared.errors import RuleViolation
from shared.problems import problem_docs
from shared.raw_body import json_body_openapi, validate_json_bytes

router = APIRouter(prefix="/v1", tags=["ingestion"])

#: One validator over the raw request bytes (see shared.raw_body).
_BATCH = TypeAdapter(EventBatch)


@router.post(
    "/events",
    response_model=AppendResponse,
    summary="Append a batch of audit events (role service)",
    description="Appends events in one total order and answers each event's `seq` (its leaf index). "
    "Idempotent by `event_id`: an event already in the log answers its existing `seq` with "
    "`duplicate: true` and adds no leaf, so producers can re-send safely after a timeout. "
    "Only internal services (role `service`) may call this.",
    responses=problem_docs(401, 403, 422),
    openapi_extra=json_body_openapi(EventBatch),
)
async def append_events(request: Request, audit: Audit, _: Service) -> Response:
    raw = await request.body()
    # msgspec when the body is one it can decode with pydantic's exact result; otherwise
    # (and for every invalid body, so errors are unchanged) the pydantic validator.
    prepared = fast_batch.decode(raw)
    events = validate_json_bytes(raw, _BATCH).events if prepared is None else None
    count = len(prepared) if prepared is not None else len(events or ())
    settings = audit.settings
    if count > settings.max_batch_events:
        raise RuleViolation(
            f"A batch may carry at most {settings.max_batch_events} events; you sent "
            f"{count}. Split it into smaller batches.",
            rule="max-batch-events",
        )
    if prepared is None:
        prepared = prepare(events or [])
    results = await audit.writer.append_prepared(prepared)
    # The hot path of the log: answer with plain JSON (the shape AppendResponse
    # documents) rather than building and re-validating a model per event.
    content = {"results": [{"event_id": r.event_id, "seq": r.seq, "duplicate": r.duplicate} for r in results]}
    return Response(orjson.dumps(content), media_type="application/json")
