"""The audit log: search, export, statistics (regulator, operator); checkpoints, proofs
and the standalone verifier (anyone)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from sluice.cli.core import AllPages, Api, Cursor, Limit, command, group, paged
from sluice.cli.output import stderr_console

audit = group("audit", "The audit log: search, export, stats, checkpoints, proofs, verify.")

Action = Annotated[str | None, typer.Option(help="exact action, or a prefix ending in a dot (orders.).")]
ActorOrg = Annotated[str | None, typer.Option(help="who acted: organisation (org_...).")]
ActorSub = Annotated[str | None, typer.Option(help="who acted: client id (cli_...).")]
SubjectType = Annotated[str | None, typer.Option(help="what it was about: order, product, entitlement, ...")]
SubjectId = Annotated[str | None, typer.Option(help="what it was about: its id (ord_..., prd_..., ...).")]
Service = Annotated[str | None, typer.Option(help="the service that recorded it (orders, access, ...).")]
Outcome = Annotated[str | None, typer.Option(help="success, failure or denied.")]
Since = Annotated[str | None, typer.Option(help="occurred at or after (RFC 3339 with a time zone).")]
Until = Annotated[str | None, typer.Option(help="occurred before (RFC 3339 with a time zone).")]
FromSeq = Annotated[int | None, typer.Option(help="from this sequence number on.")]
ToSeq = Annotated[int | None, typer.Option(help="up to this sequence number.")]
EVENT_COLUMNS = ["seq", "occurred_at", "service", "action", "outcome", "actor.sub", "actor.role",
                 "subject.type", "subject.id"]


def _filters(action: str | None, actor_org: str | None, actor_sub: str | None, subject_type: str | None,
             subject_id: str | None, service: str | None, outcome: str | None, since: str | None,
             until: str | None, from_seq: int | None, to_seq: int | None) -> dict[str, Any]:
    return {"action": action, "actor_org": actor_org, "actor_sub": actor_sub, "subject_type": subject_type,
            "subject_id": subject_id, "service": service, "outcome": outcome, "occurred_since": since,
            "occurred_until": until, "from_seq": from_seq, "to_seq": to_seq}


@command(audit, "events", calls="audit GET /v1/events", columns=EVENT_COLUMNS)
def events(api: Api, action: Action = None, actor_org: ActorOrg = None, actor_sub: ActorSub = None,
           subject_type: SubjectType = None, subject_id: SubjectId = None, service: Service = None,
           outcome: Outcome = None, since: Since = None, until: Until = None, from_seq: FromSeq = None,
           to_seq: ToSeq = None, limit: Limit = None, cursor: Cursor = None,
           all_pages: AllPages = False) -> Any:
    """Search the audit log (your search is itself audited)."""
    return paged(api.audit_events, all_pages=all_pages, cursor=cursor, limit=limit,
                 **_filters(action, actor_org, actor_sub, subject_type, subject_id, service, outcome,
                            since, until, from_seq, to_seq))


@command(audit, "event", calls="audit GET /v1/events/{seq}")
def event(api: Api, seq: Annotated[int, typer.Argument(help="the event's sequence number.")]) -> Any:
    """One event with its inclusion proof in the latest signed checkpoint."""
    return api.audit_event(seq)


@command(audit, "export", calls="audit GET /v1/events/export")
def export(api: Api, to: Annotated[Path | None, typer.Option(
               help="write NDJSON to this file, showing progress (default: standard output).")] = None,
           action: Action = None, actor_org: ActorOrg = None, actor_sub: ActorSub = None,
           subject_type: SubjectType = None, subject_id: SubjectId = None, service: Service = None,
           outcome: Outcome = None, since: Since = None, until: Until = None, from_seq: FromSeq = None,
           to_seq: ToSeq = None) -> None:
    """Export matching events as NDJSON, one stored event per line, streamed."""
    lines = api.audit_export(**_filters(action, actor_org, actor_sub, subject_type, subject_id, service,
                                        outcome, since, until, from_seq, to_seq))
    if to is None:
        for line in lines:
            sys.stdout.write(line + "\n")
        return
    count = 0
    with to.open("w") as out, stderr_console().status("exporting…") as status:
        for line in lines:
            out.write(line + "\n")
            count += 1
            if count % 500 == 0:
                status.update(f"exported {count} events…")
    stderr_console().print(f"exported {count} events to {to}")


@command(audit, "stats", calls="audit GET /v1/stats")
def stats(api: Api, action: Action = None, actor_org: ActorOrg = None, actor_sub: ActorSub = None,
          subject_type: SubjectType = None, subject_id: SubjectId = None, service: Service = None,
          outcome: Outcome = None, since: Since = None, until: Until = None, from_seq: FromSeq = None,
          to_seq: ToSeq = None) -> Any:
    """Counts of matching events by action and by day."""
    return api.audit_stats(**_filters(action, actor_org, actor_sub, subject_type, subject_id, service,
                                      outcome, since, until, from_seq, to_seq))


@command(audit, "checkpoint", calls="audit GET /v1/checkpoint")
def checkpoint(api: Api) -> Any:
    """The latest signed checkpoint (tree size, root hash, signed note)."""
    return api.checkpoint()


@command(audit, "checkpoints", calls="audit GET /v1/checkpoints",
         columns=["tree_size", "root_hash", "created_at"])
def checkpoints(api: Api, limit: Limit = None, cursor: Cursor = None, all_pages: AllPages = False) -> Any:
    """Every signed checkpoint, newest first."""
    return paged(api.checkpoints, all_pages=all_pages, cursor=cursor, limit=limit)


@command(audit, "public-key", calls="audit GET /v1/public-key")
def public_key(api: Api) -> Any:
    """The log's verifier key (pin it from a channel you trust, not only from here).

    `export SLUICE_AUDIT_PUBLIC_KEY=$(sluice audit public-key --field verifier_key)`"""
    return api.audit_public_key()


@command(audit, "inclusion-proof", calls="audit GET /v1/proofs/inclusion")
def inclusion(api: Api, leaf_index: Annotated[int, typer.Option(help="the event's sequence number.")],
              tree_size: Annotated[int | None, typer.Option(
                  help="a checkpoint's tree size (default: latest).")] = None) -> Any:
    """The proof that an event is in a tree."""
    return api.inclusion_proof(leaf_index, tree_size)


@command(audit, "consistency-proof", calls="audit GET /v1/proofs/consistency")
def consistency(api: Api, first: Annotated[int, typer.Option(help="the older tree size.")],
                second: Annotated[int | None, typer.Option(help="the newer tree size (default: latest).")]
                = None) -> Any:
    """The proof that a newer tree extends an older one unchanged."""
    return api.consistency_proof(first, second)


@command(audit, "verify", calls=["audit GET /v1/checkpoint", "audit GET /v1/proofs/consistency"])
def verify(
    api: Api,
    public_key: Annotated[str | None, typer.Option(
        help="the verifier key you pinned (without it the log's own key is trusted: a shortfall, exit 3).",
        envvar="SLUICE_AUDIT_PUBLIC_KEY", show_envvar=True)] = None,
    checkpoint_file: Annotated[Path | None, typer.Option(
        help="the checkpoint you saved last time; updated after a successful run.")] = None,
    no_save: Annotated[bool, typer.Option(help="leave --checkpoint-file unchanged.")] = False,
    start: Annotated[int | None, typer.Option(help="first event to re-download (default 0).")] = None,
    end: Annotated[int | None, typer.Option(help="event after the last to re-download (default: all).")]
    = None,
    origin: Annotated[str | None, typer.Option(help="insist on this log name.")] = None,
    allow_partial: Annotated[bool, typer.Option(
        help="exit 0 although less than asked was verified (no pinned key, a range beyond the log).")]
    = False,
) -> None:
    """Verify the log cryptographically with the standalone verifier (sluice-audit-verify).

    Exit status 0 verified all asked, 1 a check failed, 2 could not run, 3 verified less than asked."""
    from services.audit import verify as verifier

    args = ["--url", api.endpoints.audit, "--token", api.bearer()]
    for flag, value in (("--public-key", public_key), ("--checkpoint-file", checkpoint_file),
                        ("--start", start), ("--end", end), ("--origin", origin)):
        if value is not None:
            args += [flag, str(value)]
    if no_save:
        args.append("--no-save")
    if allow_partial:
        args.append("--allow-partial")
    code = verifier.main(args)
    if code:
        raise typer.Exit(code)
