"""JSON request bodies validated straight from the raw bytes, for hot endpoints.

FastAPI parses a declared body with the standard-library ``json`` module and then
validates the Python objects; for large batches (the audit log's 100-event appends)
that is two passes over every value. ``parse_json_body`` runs pydantic-core's
validator over the bytes in one pass (the JSON parser and the validator are the same
Rust code) and reports errors exactly as FastAPI would (a ``RequestValidationError``
with ``("body", ...)`` locations, so the one problem+json handler renders them).
``json_body_openapi`` and ``document_body_models`` keep the OpenAPI description of
such an endpoint identical to a declared body.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, TypeAdapter, ValidationError

T = TypeVar("T")

_REF = "#/components/schemas/{model}"


async def parse_json_body(request: Request, adapter: TypeAdapter[T]) -> T:
    """The request body validated by ``adapter`` from its raw bytes."""
    return validate_json_bytes(await request.body(), adapter)


def validate_json_bytes(raw: bytes, adapter: TypeAdapter[T]) -> T:
    """``raw`` validated by ``adapter``; errors as FastAPI reports a declared body's."""
    try:
        return adapter.validate_json(raw)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors, body=raw) from None


def json_body_openapi(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads ``model`` with :func:`parse_json_body`."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": _REF.format(model=model.__name__)}}}}}


def document_body_models(app: FastAPI, *models: type[BaseModel]) -> None:
    """Add ``models`` (and the models they use) to the app's OpenAPI components."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        spec = generate()
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        for model in models:
            schema = model.model_json_schema(ref_template=_REF, mode="validation")
            for name, sub in schema.pop("$defs", {}).items():
                schemas.setdefault(name, sub)
            schemas.setdefault(model.__name__, schema)
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
