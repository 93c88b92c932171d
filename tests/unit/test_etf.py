"""ETF codec: known encodings from Erlang, round-trips and hostile input (hypothesis)."""

from __future__ import annotations

import contextlib
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from beamfleet.runtime.erlang_dist import etf
from beamfleet.runtime.erlang_dist.etf import (
    Atom,
    BitBinary,
    Export,
    ImproperList,
    OpaqueFun,
    Pid,
    Port,
    Reference,
    TermCodecError,
    decode,
    encode,
)

# Checked against term_to_binary/1 on OTP 25 (which writes atoms outside distribution
# with the legacy tag 100; over distribution with UTF8_ATOMS they use 119, as here).
KNOWN: list[tuple[Any, bytes]] = [
    (1, bytes([131, 97, 1])),
    (-1, bytes([131, 98, 255, 255, 255, 255])),
    (2**31, bytes([131, 110, 4, 0, 0, 0, 0, 128])),
    (-(2**64), bytes([131, 110, 9, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1])),
    (Atom("ok"), bytes([131, 119, 2, 111, 107])),
    ((Atom("ok"), 1), bytes([131, 104, 2, 119, 2, 111, 107, 97, 1])),
    ([], bytes([131, 106])),
    ([1, 2, 3], bytes([131, 108, 0, 0, 0, 3, 97, 1, 97, 2, 97, 3, 106])),
    (b"ab", bytes([131, 109, 0, 0, 0, 2, 97, 98])),
    (1.5, bytes([131, 70, 63, 248, 0, 0, 0, 0, 0, 0])),
    ({Atom("a"): 1}, bytes([131, 116, 0, 0, 0, 1, 119, 1, 97, 97, 1])),
    (ImproperList((1,), 2), bytes([131, 108, 0, 0, 0, 1, 97, 1, 97, 2])),
]


@pytest.mark.parametrize(("term", "data"), KNOWN)
def test_known_encodings(term: Any, data: bytes) -> None:
    assert encode(term) == data
    assert decode(data) == term


def test_string_ext_decodes_to_list_of_ints() -> None:
    # "abc" as Erlang sends it: STRING_EXT
    assert decode(bytes([131, 107, 0, 3, 97, 98, 99])) == [97, 98, 99]
    assert encode("abc") == bytes([131, 107, 0, 3, 97, 98, 99])
    assert decode(encode("héllo→")) == [ord(c) for c in "héllo→"]


def test_python_conveniences() -> None:
    assert decode(encode(True)) == Atom("true")
    assert decode(encode(None)) == Atom("undefined")
    assert type(decode(encode(True))) is Atom


def test_legacy_tags_decode() -> None:
    # ATOM_EXT (100), SMALL_ATOM_EXT (115), FLOAT_EXT (99)
    assert decode(bytes([131, 100, 0, 2, 104, 105])) == Atom("hi")
    assert decode(bytes([131, 115, 2, 104, 105])) == Atom("hi")
    text = b"1.50000000000000000000e+00".ljust(31, b"\x00")
    assert decode(bytes([131, 99]) + text) == 1.5
    # PID_EXT (103) with a one-byte creation, NEW_REFERENCE (114)
    pid = decode(bytes([131, 103, 119, 1, 110, 0, 0, 0, 5, 0, 0, 0, 0, 2]))
    assert pid == Pid(Atom("n"), 5, 0, 2)
    ref = decode(bytes([131, 114, 0, 1, 119, 1, 110, 3, 0, 0, 0, 9]))
    assert ref == Reference(Atom("n"), 3, (9,))


def test_compressed_term() -> None:
    big = [Atom("x")] * 5000
    packed = encode(big, compressed=True)
    assert packed[1] == etf.COMPRESSED
    assert len(packed) < len(encode(big)) // 10
    assert decode(packed) == big


def test_compressed_bomb_is_refused() -> None:
    body = zlib.compress(b"\x6a" * 100)
    lying = bytes([131, 80]) + (50).to_bytes(4, "big") + body
    with pytest.raises(TermCodecError):
        decode(lying)
    huge = bytes([131, 80]) + (2**32 - 1).to_bytes(4, "big") + body
    with pytest.raises(TermCodecError):
        decode(huge)


def test_long_utf8_atom_uses_atom_utf8_ext() -> None:
    atom = Atom("é" * 200)  # 200 characters, 400 bytes: too long for SMALL_ATOM_UTF8
    data = encode(atom)
    assert data[1] == etf.ATOM_UTF8
    assert decode(data) == atom


def test_v4_pids_and_ports() -> None:
    pid = Pid(Atom("a@h"), 2**32 - 1, 2**32 - 1, 2**32 - 1)
    assert decode(encode(pid)) == pid
    port = Port(Atom("a@h"), 2**40, 7)
    assert encode(port)[1] == etf.V4_PORT
    assert decode(encode(port)) == port


@pytest.mark.parametrize(
    "bad",
    [float("nan"), float("inf"), object(), {1, 2}, Atom("x" * 256),
     Reference(Atom("n"), 1, ()), BitBinary(b"\x01", 9)],
)
def test_unencodable_raise_codec_error(bad: Any) -> None:
    with pytest.raises(TermCodecError):
        encode(bad)


def test_map_with_list_key_is_a_codec_error() -> None:
    data = bytes([131, 116, 0, 0, 0, 1, 108, 0, 0, 0, 1, 97, 1, 106, 97, 2])
    with pytest.raises(TermCodecError, match="dict key"):
        decode(data)


def test_trailing_bytes_and_missing_version() -> None:
    with pytest.raises(TermCodecError, match="trailing"):
        decode(bytes([131, 97, 1, 0]))
    with pytest.raises(TermCodecError, match="131"):
        decode(bytes([97, 1]))


def test_deep_nesting_is_a_codec_error() -> None:
    data = bytes([131]) + bytes([104, 1]) * 100_000 + bytes([106])
    with pytest.raises(TermCodecError):
        decode(data)


# ---------------------------------------------------------------- properties

atoms = st.text(max_size=40).map(Atom)
nodes = st.sampled_from([Atom("a@127.0.0.1"), Atom("nonode@nohost"), Atom("x@::1")])
u32 = st.integers(0, 2**32 - 1)
scalars = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**2100), max_value=2**2100),
    st.floats(allow_nan=False, allow_infinity=False),
    atoms,
    st.binary(max_size=300),
    st.builds(Pid, nodes, u32, u32, u32),
    st.builds(Reference, nodes, u32, st.lists(u32, min_size=1, max_size=5).map(tuple)),
    st.builds(Port, nodes, st.integers(0, 2**64 - 1), u32),
    st.builds(Export, atoms, atoms, st.integers(0, 255)),
    st.builds(BitBinary, st.binary(min_size=1, max_size=20), st.integers(1, 7)),
)
hashable = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4).map(tuple),
                        max_leaves=8)
terms = st.recursive(
    scalars,
    lambda kids: st.one_of(
        st.lists(kids, max_size=6),
        st.lists(kids, max_size=6).map(tuple),
        st.dictionaries(hashable, kids, max_size=4),
        st.builds(ImproperList, st.lists(kids, min_size=1, max_size=3).map(tuple), scalars),
    ),
    max_leaves=30,
)


@given(terms)
@settings(max_examples=400)
def test_roundtrip(term: Any) -> None:
    assert decode(encode(term)) == term


@given(terms)
@settings(max_examples=100)
def test_roundtrip_compressed(term: Any) -> None:
    assert decode(encode(term, compressed=True)) == term


@given(terms)
@settings(max_examples=100)
def test_atoms_keep_their_type(term: Any) -> None:
    def walk(a: Any, b: Any) -> None:
        assert type(a) is type(b)
        if isinstance(a, (list, tuple)):
            for x, y in zip(a, b, strict=True):
                walk(x, y)

    walk(term, decode(encode(term)))


@given(st.binary(max_size=200))
@settings(max_examples=1000)
def test_arbitrary_bytes_raise_only_codec_error(data: bytes) -> None:
    for blob in (data, bytes([131]) + data, bytes([131, 80]) + data):
        with contextlib.suppress(TermCodecError):
            decode(blob)


@given(terms, st.data())
@settings(max_examples=300)
def test_corrupted_encodings_raise_only_codec_error(term: Any, data: st.DataObject) -> None:
    raw = bytearray(encode(term))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(raw)))
    with contextlib.suppress(TermCodecError):
        decode(bytes(raw[:cut]))


def test_opaque_fun_roundtrip() -> None:
    fun = OpaqueFun((8).to_bytes(4, "big") + b"abcd")
    assert decode(encode(fun)) == fun
