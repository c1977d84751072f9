"""Standalone verifier regulators run themselves: ``python -m services.audit.verify``.

It talks only to the audit service's public HTTP API and trusts nothing it
serves without checking it:

1. the checkpoint signature (Ed25519, signed note) with a pinned verifier key;
2. consistency of the latest checkpoint with one saved earlier (a file): the
   log only grew, nothing was changed, removed or reordered;
3. a range of events, re-downloaded, their leaf hashes recomputed from the
   event contents (RFC 8785 JSON) and checked against the signed root — by
   recomputing the root when the range is the whole log, and by inclusion
   proofs otherwise (or to pinpoint which events fail).

It prints exactly what it verified and what failed. Whatever was asked but not checked (no
pinned key, no token to re-download events, a range beyond the log) is a *shortfall*: the run
then says ``INCOMPLETE`` and exits 3, unless ``--allow-partial`` accepts it. Exit status: 0
verified everything asked, 1 a check failed, 2 the verification could not run (network, token,
usage), 3 verified less than asked.

Imports only httpx, the shared event model and the pure functions of
:mod:`services.audit.verifylib` (hashlib, cryptography, rfc8785).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from services.audit.verifylib import (
    EMPTY_ROOT,
    Checkpoint,
    NoteVerifier,
    RootBuilder,
    VerificationError,
    b64,
    decode_hashes,
    event_leaf,
    leaf_hash,
    open_checkpoint,
    parse_verifier_key,
    verify_consistency,
    verify_inclusion,
)
from shared.events import StoredEvent

#: Most failing events listed one by one before the rest are summarised.
MAX_LISTED_FAILURES = 20


class CannotVerify(Exception):
    """The verification could not run (as opposed to: it ran and failed)."""


@dataclass
class Report:
    checks: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: What was asked (or is needed for evidence) but not verified.
    shortfalls: list[str] = field(default_factory=list)
    checkpoint: Checkpoint | None = None
    checkpoint_note: str | None = None  # the verified latest checkpoint, to save for next time

    @property
    def ok(self) -> bool:
        return not self.failures


async def _get_json(client: httpx.AsyncClient, path: str, **params: Any) -> Any:
    try:
        resp = await client.get(path, params=params or None)
    except httpx.HTTPError as exc:
        raise CannotVerify(f"could not reach the audit service at {client.base_url}: {exc}") from exc
    if resp.status_code != 200:
        raise CannotVerify(f"GET {path} answered {resp.status_code}: {resp.text[:300]}")
    return resp.json()


async def fetch_token(
    http: httpx.AsyncClient, access_url: str, client_id: str, client_secret: str
) -> str:
    """A regulator token by the OAuth 2.0 client credentials grant."""
    try:
        resp = await http.post(
            f"{access_url.rstrip('/')}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id, client_secret),
        )
    except httpx.HTTPError as exc:
        raise CannotVerify(f"could not reach the access service at {access_url}: {exc}") from exc
    if resp.status_code != 200:
        raise CannotVerify(f"token request failed with {resp.status_code}: {resp.text[:300]}")
    return str(resp.json()["access_token"])


async def _verifier_key(
    client: httpx.AsyncClient, pinned: str | None, report: Report
) -> tuple[NoteVerifier, str | None]:
    """The key to check signatures with, and the origin the log announces
    (only when the key itself came from the log)."""
    if pinned:
        try:
            return parse_verifier_key(pinned), None
        except VerificationError as exc:
            raise CannotVerify(f"the --public-key given is not a valid verifier key: {exc}") from exc
    served = await _get_json(client, "/v1/public-key")
    report.shortfalls.append(
        "no --public-key pinned: the signature was checked with the key the log itself serves "
        f"({served['verifier_key']}), so a log that replaced its key would pass; pin the key "
        "the operator published"
    )
    try:
        return parse_verifier_key(served["verifier_key"]), served.get("origin")
    except VerificationError as exc:
        raise CannotVerify(f"the log serves an invalid verifier key: {exc}") from exc


async def _check_consistency(
    client: httpx.AsyncClient, old: Checkpoint, new: Checkpoint, report: Report
) -> None:
    if old.tree_size > new.tree_size:
        report.failures.append(
            f"the log shrank: the saved checkpoint has {old.tree_size} events, the latest only "
            f"{new.tree_size} (events were removed or the log was rolled back)"
        )
        return
    if old.tree_size == 0:
        if old.root_hash != EMPTY_ROOT:
            report.failures.append("the saved checkpoint of the empty log has a wrong root hash")
        else:
            report.checks.append("saved checkpoint is the empty log: trivially consistent")
        return
    proof = await _get_json(
        client, "/v1/proofs/consistency", first=old.tree_size, second=new.tree_size
    )
    try:
        hashes = decode_hashes(proof["hashes"], "consistency proof")
        verify_consistency(old.tree_size, new.tree_size, old.root_hash, new.root_hash, hashes)
    except VerificationError as exc:
        report.failures.append(
            f"the latest checkpoint ({new.tree_size}) is NOT consistent with the saved one "
            f"({old.tree_size}): {exc}. History before event {old.tree_size} was changed."
        )
        return
    report.checks.append(
        f"consistency: tree {new.tree_size} extends the saved tree {old.tree_size} (nothing before "
        "it was changed, removed or reordered)"
    )


async def _download(
    client: httpx.AsyncClient, token: str, start: int, end: int, report: Report
) -> list[tuple[int, bytes, str]] | None:
    """Events [start, end) as (seq, recomputed leaf hash, event id); None on failure."""
    out: list[tuple[int, bytes, str]] = []
    expected = start
    headers = {"Authorization": f"Bearer {token}"}
    params = {"from_seq": start, "to_seq": end}
    try:
        async with client.stream("GET", "/v1/events/export", params=params, headers=headers) as resp:
            if resp.status_code != 200:
                body = (await resp.aread()).decode(errors="replace")[:300]
                raise CannotVerify(f"event export answered {resp.status_code}: {body}")
            async for line in resp.aiter_lines():
                if not line.strip():
                    continue
                try:
                    event = StoredEvent.model_validate(json.loads(line))
                except (ValueError, ValidationError) as exc:
                    report.failures.append(f"event after seq {expected - 1} is malformed: {exc}")
                    return None
                if event.seq != expected:
                    what = "missing" if event.seq > expected else "out of order or duplicated"
                    report.failures.append(
                        f"expected seq {expected} but the log served seq {event.seq}: events {what}"
                    )
                    return None
                h = leaf_hash(event_leaf(event.model_dump(mode="json")))
                out.append((event.seq, h, str(event.event_id)))
                expected += 1
    except httpx.HTTPError as exc:
        raise CannotVerify(f"event export failed: {exc}") from exc
    if expected != end:
        report.failures.append(
            f"the log served events {start}..{expected - 1} but the checkpoint covers up to "
            f"{end - 1}: events {expected}..{end - 1} are missing"
        )
        return None
    return out


async def _inclusion_failures(
    client: httpx.AsyncClient, leaves: list[tuple[int, bytes, str]], cp: Checkpoint, concurrency: int
) -> list[str]:
    sem = asyncio.Semaphore(concurrency)

    async def check(seq: int, h: bytes, event_id: str) -> str | None:
        async with sem:
            proof = await _get_json(
                client, "/v1/proofs/inclusion", leaf_index=seq, tree_size=cp.tree_size
            )
        try:
            verify_inclusion(seq, cp.tree_size, h, decode_hashes(proof["hashes"], "inclusion proof"),
                             cp.root_hash)
        except VerificationError as exc:
            return (
                f"event seq {seq} (event_id {event_id}) does not match the signed tree: its content "
                f"was changed after it was logged, or a neighbour's was ({exc})"
            )
        return None

    results = await asyncio.gather(*(check(*leaf) for leaf in leaves))
    return [r for r in results if r is not None]


async def verify_log(
    client: httpx.AsyncClient,
    *,
    token: str | None,
    public_key: str | None = None,
    origin: str | None = None,
    saved_checkpoint: str | None = None,
    start: int | None = None,
    end: int | None = None,
    concurrency: int = 8,
) -> Report:
    """Run every check against the audit service behind ``client``."""
    report = Report()
    verifier, served_origin = await _verifier_key(client, public_key, report)
    origin = origin or served_origin
    latest = await _get_json(client, "/v1/checkpoint")
    try:
        cp = open_checkpoint(latest["note"], verifier, origin)
    except VerificationError as exc:
        report.failures.append(f"the latest checkpoint does not verify: {exc}")
        return report
    report.checkpoint, report.checkpoint_note = cp, latest["note"]
    report.checks.append(
        f"checkpoint signature: tree size {cp.tree_size}, root {b64(cp.root_hash)}, signed by "
        f"{verifier.name} ({verifier.key_id:08x})"
    )
    if saved_checkpoint is not None:
        try:
            old = open_checkpoint(saved_checkpoint, verifier, origin)
        except VerificationError as exc:
            report.failures.append(f"the saved checkpoint does not verify with this key: {exc}")
        else:
            await _check_consistency(client, old, cp, report)
    first = max(0, start or 0)
    last = cp.tree_size if end is None else min(end, cp.tree_size)
    if end is not None and end > cp.tree_size:
        report.shortfalls.append(
            f"asked for events up to {end - 1}, but the signed log has {cp.tree_size}: events "
            f"{cp.tree_size}..{end - 1} were not checked")
    if token is None:
        report.shortfalls.append(
            "no token: no event was re-downloaded or recomputed, only the checkpoint was checked "
            "(give --token or regulator client credentials)")
        return report
    if first >= last:
        if start is not None or end is not None:
            report.shortfalls.append(f"no events to check in [{first}, {last}) of the signed log")
        else:
            report.notes.append("the signed log is empty: no events to check")
        return report
    leaves = await _download(client, token, first, last, report)
    if leaves is None:
        return report
    if first == 0 and last == cp.tree_size:
        builder = RootBuilder()
        for _, h, _ in leaves:
            builder.add(h)
        if builder.root() == cp.root_hash:
            report.checks.append(
                f"events 0..{last - 1}: recomputed from their contents, the root equals the signed root"
            )
            return report
        report.notes.append("the recomputed root differs from the signed root; locating the events")
    failures = await _inclusion_failures(client, leaves, cp, concurrency)
    if failures:
        report.failures += failures[:MAX_LISTED_FAILURES]
        if len(failures) > MAX_LISTED_FAILURES:
            report.failures.append(f"... and {len(failures) - MAX_LISTED_FAILURES} more events")
    elif first == 0 and last == cp.tree_size:
        report.failures.append("the recomputed root differs from the signed root")
    else:
        report.checks.append(
            f"events {first}..{last - 1}: every recomputed leaf has a valid inclusion proof "
            f"against the signed root of tree {cp.tree_size}"
        )
    return report


def print_report(report: Report, out: Callable[[str], None] = print, *, allow_partial: bool = False) -> int:
    """Print the report; return the exit status (0 all asked verified, 1 failed, 3 less than asked)."""
    for line in report.checks:
        out(f"ok    {line}")
    for line in report.notes:
        out(f"note  {line}")
    for line in report.shortfalls:
        out(f"{'note' if allow_partial else 'LESS'}  not verified: {line}")
    for line in report.failures:
        out(f"FAIL  {line}")
    size = report.checkpoint.tree_size if report.checkpoint else 0
    if not report.ok:
        out(f"FAILED: {len(report.failures)} check(s) failed")
        return 1
    verified = f"verified {len(report.checks)} check(s), each on an `ok` line"
    if report.shortfalls and not allow_partial:
        out(f"INCOMPLETE: {verified}; {len(report.shortfalls)} thing(s) asked were not verified "
            "(`LESS` lines). Fix them, or accept a partial check with --allow-partial.")
        return 3
    partial = f"; partial by choice: {len(report.shortfalls)} not verified" if report.shortfalls else ""
    out(f"OK: the audit log verifies (tree size {size}): {verified}{partial}")
    return 0


def _parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="sluice-audit-verify",
        description="Verify the Sluice audit log through its public API.",
    )
    p.add_argument("--url", default=env("SLUICE_AUDIT_URL", "http://127.0.0.1:8004"),
                   help="audit service base URL (env SLUICE_AUDIT_URL)")
    p.add_argument("--public-key", default=env("SLUICE_AUDIT_PUBLIC_KEY"),
                   help="pinned verifier key <name>+<id>+<base64> (env SLUICE_AUDIT_PUBLIC_KEY)")
    p.add_argument("--origin", help="expected checkpoint origin (default: the key name)")
    p.add_argument("--checkpoint-file", type=Path,
                   help="checkpoint saved by an earlier run: check consistency with it, then "
                        "replace it with the latest (unless --no-save)")
    p.add_argument("--no-save", action="store_true", help="do not update --checkpoint-file")
    p.add_argument("--allow-partial", action="store_true",
                   help="exit 0 although less than asked was verified (no pinned key, no token, a "
                        "range beyond the log); without it such a run exits 3")
    p.add_argument("--start", type=int, help="first seq to re-download (default 0)")
    p.add_argument("--end", type=int, help="seq after the last to re-download (default: tree size)")
    p.add_argument("--token", default=env("SLUICE_TOKEN"), help="regulator bearer token (env SLUICE_TOKEN)")
    p.add_argument("--client-id", default=env("SLUICE_CLIENT_ID"), help="regulator client id")
    p.add_argument("--client-secret", default=env("SLUICE_CLIENT_SECRET"),
                   help="regulator client secret (env SLUICE_CLIENT_SECRET)")
    p.add_argument("--access-url", default=env("SLUICE_ACCESS_URL", "http://127.0.0.1:8003"),
                   help="access service URL for the client credentials grant")
    p.add_argument("--concurrency", type=int, default=8, help="parallel proof requests")
    p.add_argument("--timeout", type=float, default=60.0, help="HTTP timeout in seconds")
    return p


async def _run(args: argparse.Namespace, transport: httpx.AsyncBaseTransport | None) -> int:
    async with httpx.AsyncClient(base_url=args.url, timeout=args.timeout, transport=transport) as client:
        token = args.token
        if not token and args.client_id and args.client_secret:
            token = await fetch_token(client, args.access_url, args.client_id, args.client_secret)
        saved = None
        if args.checkpoint_file and args.checkpoint_file.exists():
            saved = args.checkpoint_file.read_text(encoding="utf-8")
        report = await verify_log(
            client, token=token, public_key=args.public_key, origin=args.origin,
            saved_checkpoint=saved, start=args.start, end=args.end, concurrency=args.concurrency,
        )
    if report.ok and args.checkpoint_file and not args.no_save and report.checkpoint_note:
        args.checkpoint_file.write_text(report.checkpoint_note, encoding="utf-8")
        report.notes.append(f"saved the latest checkpoint to {args.checkpoint_file}")
    return print_report(report, allow_partial=args.allow_partial)


async def run(argv: list[str] | None = None, transport: httpx.AsyncBaseTransport | None = None) -> int:
    """Parse ``argv`` and verify; ``transport`` lets tests run it against an
    in-process app."""
    args = _parser().parse_args(argv)
    try:
        return await _run(args, transport)
    except CannotVerify as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    """Console entry point (``sluice-audit-verify``)."""
    return asyncio.run(run(argv))


if __name__ == "__main__":
    sys.exit(main())
