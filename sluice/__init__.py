"""Sluice client SDK and CLI (``sluice ...``)."""

from sluice.client import ApiError, Endpoints, SluiceClient

__all__ = ["ApiError", "Endpoints", "SluiceClient"]
