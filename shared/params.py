"""Shared shapes of request parameters: ids, version numbers, database-sized integers.

Why: a value the database cannot hold (a version number of 23 digits, a NUL byte in an id)
used to reach SQL and come back as a 500. The bounds live here so every service refuses the
same values with the same 422 before any query runs.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

#: Ids the platform issues (``prd_…``, ``plan_…``, ``org_…``) and the ones providers choose:
#: letters, digits and ``_ . : -``. No spaces, slashes or control characters, so an id is safe
#: in a URL path segment, a log line and every database.
ID_PATTERN = r"^[A-Za-z0-9_.:-]+$"
#: The same, also matching the empty string (for optional body fields defaulting to "").
OPTIONAL_ID_PATTERN = r"^[A-Za-z0-9_.:-]*$"
#: Largest value of a 32-bit INTEGER column (versions, counts).
MAX_INT32 = 2**31 - 1
#: Largest value of a BIGINT column (sequence numbers, money in minor units).
MAX_INT64 = 2**63 - 1

VersionPath = Annotated[int, Path(ge=1, le=MAX_INT32, description="A published version number (1, 2, …).")]
