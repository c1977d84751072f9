"""Audit service: the tamper-evident, append-only audit log."""
