"""Audit service: search, export and statistics (regulator, operator), and the public
transparency endpoints (checkpoints, proofs, the verifier key)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sluice.transport import JSON, Transport


class AuditApi(Transport):
    def audit_events(self, **filters: Any) -> JSON:
        """One page of events (filters as in ``GET /v1/events``); the read is itself audited."""
        return self.get("audit", "/v1/events", filters)

    def audit_event(self, seq: int) -> JSON:
        """One event with its inclusion proof in the latest signed checkpoint."""
        return self.get("audit", f"/v1/events/{seq}")

    def audit_export(self, **filters: Any) -> Iterator[str]:
        """The matching events as NDJSON lines, streamed."""
        return self.stream_lines(self.url("audit", "/v1/events/export"), filters)

    def audit_stats(self, **filters: Any) -> JSON:
        return self.get("audit", "/v1/stats", filters)

    def checkpoint(self) -> JSON:
        """The latest signed checkpoint (no token needed)."""
        return self.get("audit", "/v1/checkpoint", auth=False)

    def checkpoints(self, **params: Any) -> JSON:
        return self.get("audit", "/v1/checkpoints", params, auth=False)

    def audit_public_key(self) -> JSON:
        return self.get("audit", "/v1/public-key", auth=False)

    def inclusion_proof(self, leaf_index: int, tree_size: int | None = None) -> JSON:
        return self.get("audit", "/v1/proofs/inclusion",
                        {"leaf_index": leaf_index, "tree_size": tree_size}, auth=False)

    def consistency_proof(self, first: int, second: int | None = None) -> JSON:
        return self.get("audit", "/v1/proofs/consistency", {"first": first, "second": second},
                        auth=False)
