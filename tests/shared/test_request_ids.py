"""Generated request ids (shared.middleware.new_request_id): unique, 32 hex characters like the
uuid4 hex they replaced, and a forked worker never continues its parent's sequence."""

from __future__ import annotations

import os
import re
import sys

import pytest

from shared.middleware import new_request_id


def test_ids_are_unique_hex() -> None:
    ids = [new_request_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform != "linux", reason="fork on Linux")
def test_a_forked_child_draws_its_own_prefix() -> None:
    parent = new_request_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id and leave at once
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert len(child) == 32 and child[:16] != parent[:16]
