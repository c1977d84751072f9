"""Commands to another service, through the outbox.

A command is an HTTP call another service must receive exactly once in effect:
the producer writes it with :func:`shared.outbox.enqueue_command` in the same transaction as
the change that causes it, and the relay :func:`command_relay` declares delivers it with this
service's token and an ``Idempotency-Key`` (the message id), one at a time and in order,
retrying with backoff until the receiver answers 2xx or 409 (receivers are idempotent; see
``shared.outbox.check_delivered``). A 4xx other than 401/408/409/429 means the command itself
is wrong: it is dead-lettered (an operator can fix the receiver or the data and send it
again) and the commands after it go on.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.outbox import OutboxMessage
from shared.relays import HttpDelivery, Outgoing, Relay


def _command(run: Sequence[OutboxMessage]) -> Outgoing:
    [m] = run
    p = m.payload
    return Outgoing(p["method"], p["path"], p.get("body") or {}, {"Idempotency-Key": m.message_id})


def command_delivery(destination: str, base_url_setting: str) -> HttpDelivery:
    return HttpDelivery(destination, base_url_setting, _command)


def command_relay(destination: str, base_url_setting: str) -> Relay:
    """The relay of this service's commands for ``destination``, whose base URL is the setting
    named ``base_url_setting`` (e.g. "access_url")."""
    return Relay(destination, command_delivery(destination, base_url_setting),
                 what=f"commands to {destination}")
