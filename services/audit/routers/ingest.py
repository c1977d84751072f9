"""Ingestion: producers append events (role ``service``)."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import TypeAdapter

from services.audit.log import LogWriter
from services.audit.schemas import AppendResponse, EventBatch
from services.audit.settings import AuditSettings
from shared.auth import Service
from shared.errors import RuleViolation
from shared.problems import problem_docs
from shared.raw_body import json_body_openapi, parse_json_body

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
async def append_events(request: Request, _: Service) -> Response:
    body = await parse_json_body(request, _BATCH)
    settings: AuditSettings = request.app.state.settings
    if len(body.events) > settings.max_batch_events:
        raise RuleViolation(
            f"A batch may carry at most {settings.max_batch_events} events; you sent "
            f"{len(body.events)}. Split it into smaller batches.",
            rule="max-batch-events",
        )
    writer: LogWriter = request.app.state.log_writer
    results = await writer.append(body.events)
    # The hot path of the log: answer with plain JSON (the shape AppendResponse
    # documents) rather than building and re-validating a model per event.
    content = {"results": [{"event_id": r.event_id, "seq": r.seq, "duplicate": r.duplicate} for r in results]}
    return Response(orjson.dumps(content), media_type="application/json")
