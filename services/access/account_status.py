"""Statuses of organisations and API clients, and of token signing keys, as StrEnums.

No transition table: an operator moves an account between the two statuses freely (each way
is its own endpoint that refuses a no-op), and a key only ages (active → retiring → retired,
in :meth:`services.access.keys.KeyStore.rotate`). Entitlements, which have rules about which
changes exist, are in :mod:`services.access.entitlement_status`.
"""

from __future__ import annotations

from enum import StrEnum


class AccountStatus(StrEnum):
    """An organisation's or an API client's status."""

    ACTIVE = "active"
    SUSPENDED = "suspended"  # by an operator; no tokens, no entitlements in use


class KeyStatus(StrEnum):
    ACTIVE = "active"  # signs new tokens (the newest active key)
    RETIRING = "retiring"  # verifies tokens it signed until ``retire_after``
    RETIRED = "retired"  # no longer published
