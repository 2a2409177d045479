"""RFC 9162 §2.1: leaf hash SHA-256(0x00 ‖ entry), node hash SHA-256(0x01 ‖
left ‖ right); inclusion and consistency verification, step by step."""

from __future__ import annotations

import hashlib

from tollgate.verify._base import VerificationError


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _hash_sizes(*hashes: bytes) -> None:
    """Every hash is exactly 32 bytes: never truncated or padded."""
    if any(len(h) != 32 for h in hashes):
        raise VerificationError("a hash is not 32 bytes")


def verify_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> None:
    """RFC 9162 §2.1.3.2."""
    _hash_sizes(leaf, root, *proof)
    if index >= size:
        raise VerificationError("inclusion: index not below the tree size")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise VerificationError("inclusion: proof too long")
        if fn % 2 == 1 or fn == sn:
            r = _node(p, r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("inclusion: proof too short")
    if r != root:
        raise VerificationError("inclusion: proof does not lead to the root")


def verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> None:
    """RFC 9162 §2.1.4.2 (an old size of 0 has no proof)."""
    _hash_sizes(old_root, new_root, *proof)
    if old == 0 or old > new:
        raise VerificationError("consistency: no proof exists between these sizes")
    if old == new:
        if proof or old_root != new_root:
            raise VerificationError("consistency: equal sizes need an empty proof and one root")
        return
    path = list(proof)
    if old & (old - 1) == 0:  # a power of two: the old root is the first node
        path.insert(0, old_root)
    if not path:
        raise VerificationError("consistency: empty proof")
    fn, sn = old - 1, new - 1
    while fn % 2 == 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError("consistency: proof too long")
        if fn % 2 == 1 or fn == sn:
            fr, sr = _node(c, fr), _node(c, sr)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _node(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("consistency: proof too short")
    if fr != old_root or sr != new_root:
        raise VerificationError("consistency: proof does not lead to both roots")
