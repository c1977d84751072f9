"""Audit service app factory."""

from __future__ import annotations

from fastapi import FastAPI

from services.audit.settings import AuditSettings
from shared.app import create_service_app

DESCRIPTION = """
The tamper-evident, append-only audit log regulators query and verify.

Authenticate with a platform token from the access service (`POST /oauth/token`).
Errors are RFC 9457 `application/problem+json`.
"""


def create_app(settings: AuditSettings | None = None) -> FastAPI:
    settings = settings or AuditSettings()
    return create_service_app(
        settings,
        title="Sluice audit",
        description=DESCRIPTION,
        routers=[],
    )
