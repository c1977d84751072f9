"""Pure verification functions for the audit log (no database, no web framework).

Everything a regulator needs to check the log without trusting the operator:

* leaf and node hashes (RFC 6962 / RFC 9162 §2.1): ``SHA-256(0x00 ‖ leaf)`` and
  ``SHA-256(0x01 ‖ left ‖ right)``;
* inclusion and consistency proof verification exactly as RFC 9162 §2.1.3.2 and
  §2.1.4.2 describe it;
* C2SP ``signed-note`` / ``tlog-checkpoint`` encoding, Ed25519 signatures and the
  note key formats (``PRIVATE+KEY+<name>+<id>+<base64>`` and ``<name>+<id>+<base64>``);
* the leaf bytes of a stored event: RFC 8785 (JCS) canonical JSON of
  ``StoredEvent.model_dump(mode="json")``.

The service signs with these functions and the standalone verifier checks with
them, so both sides share one definition. Imports: hashlib, base64, json,
cryptography and (for the leaf bytes only) ``rfc8785``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

EMPTY_ROOT = hashlib.sha256(b"").digest()
ED25519_ALG = 0x01
_MAX_SAFE_INT = 2**53 - 1


class VerificationError(Exception):
    """A proof, checkpoint or signature did not verify; the message says which."""


# --- hashes -------------------------------------------------------------------


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


# --- leaf bytes -----------------------------------------------------------------


_SURROGATE = re.compile("[\ud800-\udfff]")


def is_plain_json(value: Any) -> bool:
    """True when ``json.dumps(sort_keys=True)`` already yields RFC 8785 output:
    no floats (JCS formats numbers like ECMAScript), integers in the IEEE-754
    safe range, ASCII object keys (so code-point order equals UTF-16 order) and
    no lone surrogates in strings."""
    t = type(value)
    if t is str:
        return value.isascii() or not _SURROGATE.search(value)
    if t is dict:
        for k, v in value.items():
            if type(k) is not str or not k.isascii() or not is_plain_json(v):
                return False
        return True
    if t is int:
        return bool(-_MAX_SAFE_INT <= value <= _MAX_SAFE_INT)
    if value is None or t is bool:
        return True
    if t is list:
        return all(map(is_plain_json, value))
    return False


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical JSON. Common, simple documents take a fast path that
    produces byte-identical output; everything else goes through ``rfc8785``.
    Raises ``ValueError`` for values JCS cannot represent (NaN, huge integers)."""
    if is_plain_json(value):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return rfc8785.dumps(value)


def event_leaf(stored_event_json: dict[str, Any]) -> bytes:
    """Leaf bytes of a stored event, given ``StoredEvent.model_dump(mode="json")``."""
    return canonical_json(stored_event_json)


# --- audit paths (RFC 9162 §2.1.3.2 and §2.1.4.2) ---------------------------------


def _check_hashes(hashes: Sequence[bytes], what: str) -> None:
    for i, h in enumerate(hashes):
        if len(h) != 32:
            raise VerificationError(f"{what}: hash #{i} is {len(h)} bytes, not 32")


def root_from_inclusion_proof(
    leaf_index: int, tree_size: int, leaf: bytes, proof: Sequence[bytes]
) -> bytes:
    """The root an inclusion proof leads to (``leaf`` is the leaf *hash*)."""
    if not 0 <= leaf_index < tree_size:
        raise VerificationError(f"leaf index {leaf_index} is outside a tree of size {tree_size}")
    _check_hashes(proof, "inclusion proof")
    fn, sn, r = leaf_index, tree_size - 1, leaf
    for p in proof:
        if sn == 0:
            raise VerificationError("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("inclusion proof is shorter than the tree is deep")
    return r


def verify_inclusion(
    leaf_index: int, tree_size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise :class:`VerificationError` unless ``proof`` shows the leaf hash
    ``leaf`` at ``leaf_index`` in the tree of ``tree_size`` with ``root``."""
    got = root_from_inclusion_proof(leaf_index, tree_size, leaf, proof)
    if got != root:
        raise VerificationError(
            f"inclusion proof for leaf {leaf_index} in tree {tree_size} leads to root "
            f"{b64(got)}, not the expected {b64(root)}"
        )


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise :class:`VerificationError` unless ``proof`` shows the tree of size
    ``second`` with ``second_root`` extends the tree of size ``first``."""
    if not 0 < first <= second:
        raise VerificationError(f"sizes must satisfy 0 < first <= second (got {first}, {second})")
    _check_hashes(proof, "consistency proof")
    if first == second:
        if proof:
            raise VerificationError("a consistency proof between equal sizes must be empty")
        if first_root != second_root:
            raise VerificationError(f"two different roots for the same tree size {first}")
        return
    path = list(proof)
    if first & (first - 1) == 0:  # first is a power of two: its root is a node of the new tree
        path.insert(0, first_root)
    if not path:
        raise VerificationError("consistency proof is empty")
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError("consistency proof is longer than needed")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("consistency proof is shorter than needed")
    if fr != first_root:
        raise VerificationError(
            f"consistency proof does not reproduce the root of size {first} "
            f"(got {b64(fr)}, expected {b64(first_root)})"
        )
    if sr != second_root:
        raise VerificationError(
            f"consistency proof does not reproduce the root of size {second} "
            f"(got {b64(sr)}, expected {b64(second_root)})"
        )


class RootBuilder:
    """Streaming root computation over leaf hashes in order (O(log n) memory)."""

    def __init__(self) -> None:
        self.size = 0
        self._stack: list[bytes] = []  # full subtree roots, largest first

    def add(self, leaf_h: bytes) -> None:
        h, n = leaf_h, self.size
        while n & 1:
            h = node_hash(self._stack.pop(), h)
            n >>= 1
        self._stack.append(h)
        self.size += 1

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        h = self._stack[-1]
        for left in reversed(self._stack[:-1]):
            h = node_hash(left, h)
        return h


# --- encodings --------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str, what: str = "value") -> bytes:
    try:
        return base64.b64decode(text.encode(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError(f"{what} is not valid base64") from exc


def decode_hashes(items: Iterable[str], what: str) -> list[bytes]:
    out = [unb64(s, what) for s in items]
    _check_hashes(out, what)
    return out


# --- note keys (golang.org/x/mod/sumdb/note formats) -------------------------------


def _valid_key_name(name: str) -> bool:
    return bool(name) and all(not c.isspace() and c != "+" for c in name) and name.isprintable()


def key_id(name: str, public_key: bytes) -> int:
    """The 4-byte key id: first 4 bytes of SHA-256(name ‖ "\\n" ‖ 0x01 ‖ public key)."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([ED25519_ALG]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class NoteVerifier:
    name: str
    key_id: int
    public_key: Ed25519PublicKey

    @property
    def vkey(self) -> str:
        raw = bytes([ED25519_ALG]) + _raw_public(self.public_key)
        return f"{self.name}+{self.key_id:08x}+{b64(raw)}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            self.public_key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class NoteSigner:
    name: str
    key_id: int
    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls, name: str) -> NoteSigner:
        if not _valid_key_name(name):
            raise ValueError(f"invalid key name {name!r}: no spaces or '+' allowed")
        priv = Ed25519PrivateKey.generate()
        return cls(name, key_id(name, _raw_public(priv.public_key())), priv)

    @property
    def skey(self) -> str:
        from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

        seed = self.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return f"PRIVATE+KEY+{self.name}+{self.key_id:08x}+{b64(bytes([ED25519_ALG]) + seed)}"

    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self.name, self.key_id, self.private_key.public_key())

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)


def _split_key(text: str, parts: int, what: str) -> list[str]:
    # The base64 body may itself contain '+': split only the leading fields off.
    fields = text.strip().split("+", parts - 1)
    if len(fields) != parts:
        raise VerificationError(f"{what} must have {parts} '+'-separated fields")
    return fields


def _key_body(name: str, hex_id: str, body_b64: str, size: int, what: str) -> tuple[int, bytes]:
    if not _valid_key_name(name):
        raise VerificationError(f"{what}: invalid key name {name!r}")
    try:
        kid = int(hex_id, 16)
    except ValueError as exc:
        raise VerificationError(f"{what}: key id {hex_id!r} is not 8 hex digits") from exc
    if len(hex_id) != 8:
        raise VerificationError(f"{what}: key id {hex_id!r} is not 8 hex digits")
    raw = unb64(body_b64, what)
    if len(raw) != 1 + size or raw[0] != ED25519_ALG:
        raise VerificationError(f"{what}: only Ed25519 keys (algorithm 1) are supported")
    return kid, raw[1:]


def parse_verifier_key(vkey: str) -> NoteVerifier:
    """Parse ``<name>+<hex id>+<base64(0x01 ‖ public key)>`` and check its id."""
    name, hex_id, body = _split_key(vkey, 3, "verifier key")
    kid, raw = _key_body(name, hex_id, body, 32, "verifier key")
    if key_id(name, raw) != kid:
        raise VerificationError("verifier key: the key id does not match the name and key")
    return NoteVerifier(name, kid, Ed25519PublicKey.from_public_bytes(raw))


def parse_signer_key(skey: str) -> NoteSigner:
    """Parse ``PRIVATE+KEY+<name>+<hex id>+<base64(0x01 ‖ seed)>`` and check its id."""
    fields = _split_key(skey, 5, "signer key")
    if fields[:2] != ["PRIVATE", "KEY"]:
        raise VerificationError("signer key must start with PRIVATE+KEY+")
    name, hex_id, body = fields[2:]
    kid, seed = _key_body(name, hex_id, body, 32, "signer key")
    priv = Ed25519PrivateKey.from_private_bytes(seed)
    if key_id(name, _raw_public(priv.public_key())) != kid:
        raise VerificationError("signer key: the key id does not match the name and key")
    return NoteSigner(name, kid, priv)


# --- signed notes and checkpoints (C2SP signed-note, tlog-checkpoint) --------------

SIG_PREFIX = "\u2014 "  # em dash and a space


def sign_note(text: str, signer: NoteSigner) -> str:
    if not text.endswith("\n"):
        raise ValueError("note text must end with a newline")
    sig = signer.sign(text.encode())
    blob = signer.key_id.to_bytes(4, "big") + sig
    return f"{text}\n{SIG_PREFIX}{signer.name} {b64(blob)}\n"


def open_note(note: str, verifier: NoteVerifier) -> str:
    """Return the note's text if it carries a valid signature by ``verifier``."""
    split = note.rfind("\n\n")
    if split < 0:
        raise VerificationError("malformed note: no blank line before the signatures")
    text, sigs = note[: split + 1], note[split + 2 :]
    if not sigs.endswith("\n"):
        raise VerificationError("malformed note: the signature block must end with a newline")
    matched = False
    for line in sigs[:-1].split("\n"):
        if not line.startswith(SIG_PREFIX):
            raise VerificationError(f"malformed signature line {line!r}")
        try:
            name, blob_b64 = line[len(SIG_PREFIX) :].split(" ")
        except ValueError as exc:
            raise VerificationError(f"malformed signature line {line!r}") from exc
        blob = unb64(blob_b64, "signature")
        if len(blob) < 5:
            raise VerificationError("signature is too short")
        if name != verifier.name or int.from_bytes(blob[:4], "big") != verifier.key_id:
            continue  # signed by some other key (e.g. a witness); ignore
        if not verifier.verify(text.encode(), blob[4:]):
            raise VerificationError(
                f"the signature by {name} (key id {verifier.key_id:08x}) does not verify: "
                "the checkpoint was altered or signed with another key"
            )
        matched = True
    if not matched:
        raise VerificationError(
            f"no signature by the expected key {verifier.name} ({verifier.key_id:08x})"
        )
    return text


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    tree_size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> str:
        lines = [self.origin, str(self.tree_size), b64(self.root_hash), *self.extensions]
        return "\n".join(lines) + "\n"


def parse_checkpoint_body(text: str) -> Checkpoint:
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise VerificationError("checkpoint body must have origin, size and root hash lines")
    origin, size_s, root_s, *ext = lines[:-1]
    if not origin:
        raise VerificationError("checkpoint origin line is empty")
    if not size_s.isdigit() or (size_s != "0" and size_s.startswith("0")):
        raise VerificationError(f"checkpoint tree size {size_s!r} is not a decimal number")
    root = unb64(root_s, "checkpoint root hash")
    if len(root) != 32:
        raise VerificationError("checkpoint root hash is not 32 bytes")
    return Checkpoint(origin, int(size_s), root, tuple(ext))


def sign_checkpoint(cp: Checkpoint, signer: NoteSigner) -> str:
    return sign_note(cp.body(), signer)


def open_checkpoint(note: str, verifier: NoteVerifier, origin: str | None = None) -> Checkpoint:
    """Verify the signature and parse the checkpoint; check the origin if given."""
    cp = parse_checkpoint_body(open_note(note, verifier))
    expected = origin if origin is not None else verifier.name
    if cp.origin != expected:
        raise VerificationError(f"checkpoint origin is {cp.origin!r}, expected {expected!r}")
    return cp
