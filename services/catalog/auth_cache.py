"""Token verification with memory, for the catalog's hot public reads.

Verifying an RS256 platform token costs more than serving a cached product, and
the same token comes back for every request a client makes during its 15-minute
life. A verified token's signature and claims cannot change, so its principal
is remembered until the token expires (bounded LRU). Only time matters after
verification, and ``exp`` is re-checked on every use. Keys withdrawn from the
JWKS stop new tokens at once; tokens already seen keep working until their
``exp`` (at most 15 minutes), as they would with the JWKS cache anyway.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.auth import Principal, TokenVerifier
from shared.errors import Unauthorized

_bearer = HTTPBearer(auto_error=False, description="Platform token from POST /oauth/token")


class VerifiedTokens:
    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, Principal] = OrderedDict()

    async def principal(self, verifier: TokenVerifier, token: str) -> Principal:
        key = hashlib.sha256(token.encode()).digest()
        known = self._entries.get(key)
        if known is not None and float(known.claims["exp"]) > time.time():
            return known
        principal = await verifier.verify(token)  # raises on anything wrong
        self._entries[key] = principal
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return principal


async def remembered_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Same contract as ``shared.auth.CurrentPrincipal`` (any valid token)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized(
            "This endpoint needs a bearer token. Get one with the client credentials "
            "grant at the access service's POST /oauth/token.",
            headers={"WWW-Authenticate": 'Bearer realm="sluice"'},
        )
    tokens: VerifiedTokens = request.app.state.verified_tokens
    principal = await tokens.principal(request.app.state.verifier, credentials.credentials)
    request.state.principal = principal
    return principal


AnyPrincipal = Annotated[Principal, Depends(remembered_principal)]
