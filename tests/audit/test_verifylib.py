"""Signed notes, note keys, checkpoints and canonical JSON (services/audit/verifylib.py)."""

from __future__ import annotations

from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from services.audit.verifylib import (
    Checkpoint,
    NoteSigner,
    VerificationError,
    canonical_json,
    open_checkpoint,
    open_note,
    parse_signer_key,
    parse_verifier_key,
    sign_checkpoint,
    sign_note,
)

# Known answer from golang.org/x/mod/sumdb/note's documentation.
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_NOTE = GO_TEXT + (
    "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def test_go_note_vector_signs_and_verifies_byte_for_byte() -> None:
    signer = parse_signer_key(GO_SKEY)
    assert signer.verifier().vkey == GO_VKEY
    assert sign_note(GO_TEXT, signer) == GO_NOTE
    assert open_note(GO_NOTE, parse_verifier_key(GO_VKEY)) == GO_TEXT


def test_generated_keys_round_trip_through_their_text_forms() -> None:
    signer = NoteSigner.generate("example.com/log")
    again = parse_signer_key(signer.skey)
    assert again.key_id == signer.key_id
    assert parse_verifier_key(signer.verifier().vkey).key_id == signer.key_id


def test_a_key_with_a_wrong_id_is_refused() -> None:
    name, _, body = GO_VKEY.split("+", 2)
    with pytest.raises(VerificationError, match="key id"):
        parse_verifier_key(f"{name}+00000000+{body}")


def test_checkpoint_signs_and_opens() -> None:
    signer = NoteSigner.generate("example.com/log")
    cp = Checkpoint("example.com/log", 42, bytes(range(32)))
    note = sign_checkpoint(cp, signer)
    assert note.startswith("example.com/log\n42\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n\n\u2014 example.com/log ")
    assert open_checkpoint(note, signer.verifier()) == cp


@pytest.mark.parametrize("change", [
    ("\n42\n", "\n43\n"),          # another size
    ("AAECAw", "AAECAx"),          # another root
    ("example.com/log\n", "example.org/log\n"),  # another origin line
])
def test_altered_checkpoint_is_refused(change: tuple[str, str]) -> None:
    signer = NoteSigner.generate("example.com/log")
    note = sign_checkpoint(Checkpoint("example.com/log", 42, bytes(range(32))), signer)
    text, sigs = note.split("\n\n", 1)
    forged = text.replace(*change, 1) + "\n\n" + sigs
    with pytest.raises(VerificationError):
        open_checkpoint(forged, signer.verifier())


def test_checkpoint_signed_by_another_key_is_refused() -> None:
    ours, theirs = NoteSigner.generate("example.com/log"), NoteSigner.generate("example.com/log")
    note = sign_checkpoint(Checkpoint("example.com/log", 1, bytes(32)), theirs)
    with pytest.raises(VerificationError, match="no signature by the expected key"):
        open_checkpoint(note, ours.verifier())


def test_checkpoint_with_an_unexpected_origin_is_refused() -> None:
    signer = NoteSigner.generate("example.com/log")
    note = sign_checkpoint(Checkpoint("example.com/other", 1, bytes(32)), signer)
    with pytest.raises(VerificationError, match="origin"):
        open_checkpoint(note, signer.verifier())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_canonical_json_equals_rfc8785(value: Any) -> None:
    try:
        expected = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:
        with pytest.raises(ValueError):
            canonical_json(value)
        return
    assert canonical_json(value) == expected


def test_canonical_json_known_answer() -> None:
    value: Any = {"b": [1, 2.5, 1e21, "é\n\u0001"], "a": None, "\u20ac": True, "\U0001f600": 0, "c": -0.0}
    assert canonical_json(value) == rfc8785.dumps(value)
    assert canonical_json({"z": 1, "a": "x"}) == b'{"a":"x","z":1}'


def test_service_leaf_assembly_equals_the_verifier_definition() -> None:
    """The writer assembles the leaf from per-member canonical JSON; it must be
    byte-identical to canonical JSON of the whole StoredEvent dump."""
    from datetime import UTC, datetime

    from services.audit.log import leaf_bytes, prepare, stored_event_json
    from shared.events import AuditEvent, StoredEvent
    from tests.audit.conftest import make_event

    received = datetime(2026, 11, 28, 1, 2, 3, 456789, tzinfo=UTC)
    samples = [make_event(3),
               make_event(1, details={"request_id": "x\\\",\"request_id\":", "service": {"seq": 1}},
                          request_id=',"service":"', subject={"type": ',"request_id":', "id": '"},'}),
               make_event(0, details={"z": [1.5, {"é": None}], "\U0001f600": "x", "a": -0.0},
                                         actor={"sub": None, "org": None, "role": None}, request_id=None)]
    for raw in samples:
        event = AuditEvent.model_validate(raw)
        (prepared,) = prepare([event])
        stored = StoredEvent(**event.model_dump(), seq=12345, received_at=received).model_dump(mode="json")
        assert stored == stored_event_json(event.model_dump(mode="json"), 12345, received)
        received_json = canonical_json(stored["received_at"])
        assert leaf_bytes(prepared, 12345, received_json) == canonical_json(stored) == rfc8785.dumps(stored)


@settings(max_examples=300, deadline=None)
@given(details=st.dictionaries(st.text(max_size=6), json_values, max_size=4),
       free_text=st.text(max_size=12) | st.none())
def test_writer_canonical_json_of_any_event_equals_rfc8785(details: dict[str, Any], free_text: str | None) -> None:
    """The writer canonicalises events with a fast path (orjson, sorted keys); any event it
    accepts must give exactly rfc8785's bytes, and any it refuses must be refused by rfc8785."""
    from services.audit.log import canonical_event_json
    from shared.events import AuditEvent
    from tests.audit.conftest import make_event

    raw = make_event(5, details=details, request_id=free_text,
                     actor={"sub": free_text, "org": "org_ü", "role": None})
    dump = AuditEvent.model_validate(raw).model_dump(mode="json")
    try:
        expected = rfc8785.dumps(dump)
    except rfc8785.CanonicalizationError:
        with pytest.raises(ValueError):
            canonical_event_json(dump)
        return
    assert canonical_event_json(dump) == expected
