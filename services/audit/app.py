"""Audit service app factory."""

from __future__ import annotations

from fastapi import FastAPI

from services.audit.routers import ingest, regulator, transparency
from services.audit.runtime import audit_state
from services.audit.schemas import EventBatch
from services.audit.settings import AuditSettings
from shared.app import create_service_app
from shared.raw_body import document_body_models

DESCRIPTION = """
The tamper-evident, append-only audit log regulators query and verify.

* **Ingestion** (`POST /v1/events`, role `service`): idempotent by `event_id`, one gap-free order.
* **Transparency** (public, no token): signed checkpoints (C2SP tlog-checkpoint, Ed25519),
  the verifier key, RFC 9162 inclusion and consistency proofs.
* **Regulator API** (roles `regulator` or `operator`): search, read with proof, NDJSON export and
  statistics; every read is itself appended to the log.

The leaf of each event is the RFC 8785 canonical JSON of the stored event (the event plus `seq` and
`received_at`); leaf hash `SHA-256(0x00‖leaf)`, node hash `SHA-256(0x01‖left‖right)`. Check the log
yourself with `python -m services.audit.verify`.

Authenticate with a platform token from the access service (`POST /oauth/token`).
Errors are RFC 9457 `application/problem+json`.
"""


def create_app(settings: AuditSettings | None = None) -> FastAPI:
    settings = settings or AuditSettings()
    app = create_service_app(
        settings,
        title="Sluice audit",
        description=DESCRIPTION,
        routers=[ingest.router, transparency.router, regulator.router],
        lifespan_steps=[audit_state],
        openapi_tags=[
            {"name": "ingestion", "description": "Producers append events (role service)"},
            {"name": "transparency", "description": "Public checkpoints, verifier key and proofs"},
            {"name": "regulator", "description": "Search, read, export and count events"},
            {"name": "operations", "description": "Health, readiness and metrics"},
        ],
    )
    document_body_models(app, EventBatch)  # read from raw bytes by POST /v1/events
    return app
