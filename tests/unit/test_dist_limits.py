"""The term codec's limits against hostile input: bombs, floods, depth, colliding map keys.

Each test builds the crafted bytes by hand (the encoder would refuse or be slow to make
some of them) and checks the decoder refuses them quickly and without growing memory.
"""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import pytest

from beamfleet.runtime.erlang_dist import TermCodecError, TermTooLarge, etf
from beamfleet.runtime.erlang_dist.etf import Atom, decode, encode

# a prime modulus of CPython's integer hash: every multiple of it hashes to 0
HASH_MODULUS = 2**61 - 1


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def compression_bomb(cells: int) -> bytes:
    """A compressed term that inflates to a list of ``cells`` small integers."""
    body = struct.pack(">BI", etf.LIST, cells) + b"\x61\x00" * cells + b"\x6a"
    return struct.pack(">BBI", 131, etf.COMPRESSED, len(body)) + zlib.compress(body, 9)


def colliding_int_map(n: int) -> bytes:
    """A map of ``n`` distinct integer keys that all have the same Python hash."""
    out = bytearray(struct.pack(">BBI", 131, etf.MAP, n))
    for k in range(1, n + 1):
        mag = (k * HASH_MODULUS).to_bytes(10, "little")
        out += struct.pack(">BBB", etf.SMALL_BIG, len(mag), 0) + mag + b"\x61\x01"
    return bytes(out)


def test_compression_bomb_refused_fast_and_small() -> None:
    bomb = compression_bomb(20_000_000)
    assert len(bomb) < 100_000  # ~40 MB of term in a few tens of KB
    before = rss_kib()
    start = time.monotonic()
    with pytest.raises(TermTooLarge, match="inflated"):
        decode(bomb)
    assert time.monotonic() - start < 1.0
    assert rss_kib() - before < 20 * 1024


def test_compressed_term_within_the_limit_still_decodes() -> None:
    big = [Atom("x"), b"y" * 1000] * 500
    assert decode(encode(big, compressed=True)) == big


def test_element_budget() -> None:
    # one byte per element, ~2.1 M empty lists: each would cost a Python object
    n = etf.MAX_ITEMS + 1
    flood = struct.pack(">BBI", 131, etf.LIST, n) + b"\x6a" * (n + 1)
    before = rss_kib()
    start = time.monotonic()
    with pytest.raises(TermTooLarge, match="elements"):
        decode(flood)
    assert time.monotonic() - start < 1.0
    assert rss_kib() - before < 20 * 1024
    # the same shape within the budget decodes
    ok = struct.pack(">BBI", 131, etf.LIST, 1000) + b"\x6a" * 1001
    assert decode(ok) == [[]] * 1000


def test_depth_limit() -> None:
    def nested(depth: int) -> bytes:
        return bytes([131]) + bytes([104, 1]) * depth + bytes([106])

    assert decode(nested(etf.MAX_DEPTH)) is not None
    with pytest.raises(TermTooLarge, match="deeper"):
        decode(nested(etf.MAX_DEPTH + 1))
    # lists count too
    deep_list = (
        bytes([131])
        + struct.pack(">BI", etf.LIST, 1) * (etf.MAX_DEPTH + 1)
        + b"\x6a" * (etf.MAX_DEPTH + 2)
    )
    with pytest.raises(TermTooLarge):
        decode(deep_list)


def test_colliding_map_keys_are_refused_fast() -> None:
    data = colliding_int_map(21_000)
    assert len(data) < 400_000  # a few hundred KB
    start = time.monotonic()
    with pytest.raises(TermCodecError, match="collide"):
        decode(data)
    assert time.monotonic() - start < 0.5


def test_maps_with_a_few_equal_hashes_still_decode() -> None:
    # -1 and -2 share a hash in CPython; so do a handful of multiples of the modulus
    keys = [-1, -2, *(k * HASH_MODULUS for k in range(1, etf.MAX_KEYS_PER_HASH))]
    term = {k: i for i, k in enumerate(keys)}
    assert len(term) == etf.MAX_KEYS_PER_HASH + 1
    assert decode(encode(term)) == term
    many = {i: Atom("v") for i in range(10_000)}
    assert decode(encode(many)) == many


def test_unhashable_map_key_still_a_codec_error() -> None:
    keys = [[i] for i in range(etf.MAX_KEYS_PER_HASH + 5)]
    out = bytearray(struct.pack(">BBI", 131, etf.MAP, len(keys)))
    for k in keys:
        out += encode(k)[1:] + b"\x61\x01"
    with pytest.raises(TermCodecError, match="dict key"):
        decode(bytes(out))
