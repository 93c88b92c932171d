"""Erlang External Term Format (ETF): encode Python values, decode Erlang terms.

Mapping (decode direction = what replies look like)::

    Erlang                      Python
    atom                        Atom (a str subclass; true/false/undefined stay Atoms)
    integer (any size)          int
    float                       float
    binary                      bytes
    bitstring (not whole bytes) BitBinary(data, bits)
    [] / proper list            list
    "abc" (STRING_EXT)          list of ints  (Erlang strings are lists of integers)
    improper list               ImproperList(items, tail)
    tuple                       tuple
    map                         dict (keys must be hashable: a map keyed by lists fails)
    pid / reference / port      Pid / Reference / Port
    fun M:F/A                   Export(module, function, arity)
    other funs                  OpaqueFun (raw bytes, re-encodable)

Encoding also accepts: ``str`` -> Erlang string (list of code points; send bytes for a
binary, Atom for an atom), ``bool`` -> true/false, ``None`` -> undefined,
bytearray/memoryview -> binary. NaN and infinities have no Erlang form.

``decode(data)`` expects the version byte 131 first; compressed terms (tag 80) are
inflated with a bound on the declared size. Every failure raises :class:`TermCodecError`.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from beamfleet.runtime.erlang_dist.errors import TermCodecError, TermTooLarge

VERSION = 131

# tags
NEW_FLOAT = 70
BIT_BINARY = 77
COMPRESSED = 80
ATOM_CACHE_REF = 82
NEW_PID = 88
NEWER_REFERENCE = 90
NEW_PORT = 89
SMALL_INTEGER = 97
INTEGER = 98
FLOAT = 99
ATOM = 100
REFERENCE = 101
PORT = 102
PID = 103
SMALL_TUPLE = 104
LARGE_TUPLE = 105
NIL = 106
STRING = 107
LIST = 108
BINARY = 109
SMALL_BIG = 110
LARGE_BIG = 111
NEW_FUN = 112
EXPORT = 113
NEW_REFERENCE = 114
SMALL_ATOM = 115
MAP = 116
ATOM_UTF8 = 118
SMALL_ATOM_UTF8 = 119
V4_PORT = 120

# Limits on what one decoded term may cost (a control-plane client receives small
# replies; a hostile peer must not make us allocate or compute without bound).
# A compressed term may not inflate to more than this many bytes ...
MAX_INFLATED = 8 * 1024 * 1024
# ... no term may have more elements in all its tuples, lists, strings and maps together
# (each element costs a Python object and a pointer, whatever its encoded size) ...
MAX_ITEMS = 2_000_000
# ... nor nest its tuples, lists and maps deeper than this.
MAX_DEPTH = 200
# Distinct map keys may share a Python hash (1 and 1.0; -1 and -2); a map where more than
# this many do is crafted to make dict insertion quadratic and is refused.
MAX_KEYS_PER_HASH = 16


class Atom(str):
    """An Erlang atom. Compares equal to the plain ``str`` of its name."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Atom({str.__repr__(self)})"


@dataclass(frozen=True, slots=True)
class Pid:
    """An Erlang process identifier ``<node.id.serial>``."""

    node: Atom
    id: int
    serial: int
    creation: int


@dataclass(frozen=True, slots=True)
class Reference:
    """An Erlang reference (``make_ref()``); ``ids`` has 1..5 words."""

    node: Atom
    creation: int
    ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Port:
    """An Erlang port identifier."""

    node: Atom
    id: int
    creation: int


@dataclass(frozen=True, slots=True)
class Export:
    """An external fun ``fun Module:Function/Arity``."""

    module: Atom
    function: Atom
    arity: int


@dataclass(frozen=True, slots=True)
class OpaqueFun:
    """A local fun, kept as its encoded bytes (everything after the NEW_FUN tag)."""

    raw: bytes


@dataclass(frozen=True, slots=True)
class BitBinary:
    """A bitstring whose last byte holds only ``bits`` (1..7) significant bits."""

    data: bytes
    bits: int


@dataclass(frozen=True, slots=True)
class ImproperList:
    """A list whose tail is not ``[]``: ``[a, b | tail]``."""

    items: tuple[Any, ...]
    tail: Any


# ---------------------------------------------------------------- encoding

_pack_u8 = struct.Struct(">B").pack
_pack_u16 = struct.Struct(">H").pack
_pack_u32 = struct.Struct(">I").pack
_pack_i32 = struct.Struct(">i").pack
_pack_f64 = struct.Struct(">d").pack
_pack_tag_u8 = struct.Struct(">BB").pack
_pack_tag_u16 = struct.Struct(">BH").pack
_pack_tag_u32 = struct.Struct(">BI").pack
_pack_tag_i32 = struct.Struct(">Bi").pack

_ATOM_TRUE = b"\x77\x04true"
_ATOM_FALSE = b"\x77\x05false"
_ATOM_UNDEFINED = b"\x77\x09undefined"


def encode(term: Any, *, compressed: bool | int = False) -> bytes:
    """Encode ``term`` as ETF, with the leading version byte 131.

    Args:
        term: a Python value (see the module docstring for the mapping).
        compressed: zlib-compress the body (True, or a zlib level 1..9); it is kept
            uncompressed when that would not be smaller, as Erlang does.

    Example::

        encode((Atom("ok"), [1, 2], b"bin"))
    """
    out = bytearray()
    try:
        _encode(term, out)
    except RecursionError as exc:
        raise TermCodecError("term nested too deeply to encode") from exc
    if compressed:
        level = 6 if compressed is True else int(compressed)
        packed = zlib.compress(bytes(out), level)
        if len(packed) + 5 < len(out):
            return bytes((VERSION, COMPRESSED)) + _pack_u32(len(out)) + packed
    return bytes((VERSION,)) + bytes(out)


def encode_body(term: Any) -> bytes:
    """Encode ``term`` without the version byte (to splice into a larger term)."""
    out = bytearray()
    try:
        _encode(term, out)
    except RecursionError as exc:
        raise TermCodecError("term nested too deeply to encode") from exc
    return bytes(out)


def _encode_atom(name: str, out: bytearray) -> None:
    raw = name.encode("utf-8")
    if len(name) > 255:
        raise TermCodecError(f"atom too long ({len(name)} characters, Erlang allows 255)")
    if len(raw) < 256:
        out += _pack_tag_u8(SMALL_ATOM_UTF8, len(raw))
    else:
        out += _pack_tag_u16(ATOM_UTF8, len(raw))
    out += raw


def _encode_int(value: int, out: bytearray) -> None:
    if 0 <= value < 256:
        out += _pack_tag_u8(SMALL_INTEGER, value)
    elif -(1 << 31) <= value < (1 << 31):
        out += _pack_tag_i32(INTEGER, value)
    else:
        sign = 1 if value < 0 else 0
        mag = -value if sign else value
        raw = mag.to_bytes((mag.bit_length() + 7) // 8, "little")
        if len(raw) < 256:
            out += _pack_tag_u8(SMALL_BIG, len(raw))
        else:
            out += _pack_tag_u32(LARGE_BIG, len(raw))
        out.append(sign)
        out += raw


def _encode(term: Any, out: bytearray) -> None:
    # order matters: bool before int, Atom before str
    t = type(term)
    if t is Atom:
        _encode_atom(term, out)
    elif t is int:
        _encode_int(term, out)
    elif t is tuple:
        n = len(term)
        out += _pack_tag_u8(SMALL_TUPLE, n) if n < 256 else _pack_tag_u32(LARGE_TUPLE, n)
        for item in term:
            _encode(item, out)
    elif t is list:
        if term:
            out += _pack_tag_u32(LIST, len(term))
            for item in term:
                _encode(item, out)
        out.append(NIL)
    elif t is bytes or t is bytearray or t is memoryview:
        out += _pack_tag_u32(BINARY, len(term))
        out += term
    elif t is bool:
        out += _ATOM_TRUE if term else _ATOM_FALSE
    elif term is None:
        out += _ATOM_UNDEFINED
    elif t is str:
        _encode_string(term, out)
    elif t is float:
        if not math.isfinite(term):
            raise TermCodecError(f"{term!r} has no Erlang representation")
        out.append(NEW_FLOAT)
        out += _pack_f64(term)
    elif t is dict:
        out += _pack_tag_u32(MAP, len(term))
        for key, value in term.items():
            _encode(key, out)
            _encode(value, out)
    elif t is Pid:
        out.append(NEW_PID)
        _encode_atom(term.node, out)
        out += struct.pack(">III", term.id, term.serial, term.creation)
    elif t is Reference:
        if not 1 <= len(term.ids) <= 5:
            raise TermCodecError("a reference has 1 to 5 id words")
        out += _pack_tag_u16(NEWER_REFERENCE, len(term.ids))
        _encode_atom(term.node, out)
        out += struct.pack(f">I{len(term.ids)}I", term.creation, *term.ids)
    elif t is Port:
        if term.id < (1 << 32):
            out.append(NEW_PORT)
            _encode_atom(term.node, out)
            out += struct.pack(">II", term.id, term.creation)
        else:
            out.append(V4_PORT)
            _encode_atom(term.node, out)
            out += struct.pack(">QI", term.id, term.creation)
    elif t is ImproperList:
        if not term.items:
            raise TermCodecError("an improper list needs at least one element")
        out += _pack_tag_u32(LIST, len(term.items))
        for item in term.items:
            _encode(item, out)
        _encode(term.tail, out)
    elif t is BitBinary:
        if not 1 <= term.bits <= 7 or not term.data:
            raise TermCodecError("a BitBinary needs data and 1..7 bits in its last byte")
        out += _pack_tag_u32(BIT_BINARY, len(term.data))
        out.append(term.bits)
        out += term.data
    elif t is Export:
        out.append(EXPORT)
        _encode_atom(term.module, out)
        _encode_atom(term.function, out)
        _encode_int(term.arity, out)
    elif t is OpaqueFun:
        out.append(NEW_FUN)
        out += term.raw
    # subclasses of the basic types (e.g. IntEnum, a str subclass) take the slow path
    elif isinstance(term, Atom):
        _encode_atom(term, out)
    elif isinstance(term, bool):
        out += _ATOM_TRUE if term else _ATOM_FALSE
    elif isinstance(term, int):
        _encode_int(int(term), out)
    elif isinstance(term, str):
        _encode_string(str(term), out)
    elif isinstance(term, tuple):
        _encode(tuple(term), out)
    elif isinstance(term, list):
        _encode(list(term), out)
    elif isinstance(term, dict):
        _encode(dict(term), out)
    else:
        raise TermCodecError(f"cannot encode a {t.__name__} as an Erlang term")


def _encode_string(text: str, out: bytearray) -> None:
    if not text:
        out.append(NIL)
        return
    try:
        raw = text.encode("latin-1")
    except UnicodeEncodeError:
        raw = b""
    if raw and len(raw) < 65536:
        out += _pack_tag_u16(STRING, len(raw))
        out += raw
        return
    _encode([ord(c) for c in text], out)


# ---------------------------------------------------------------- decoding

_u16 = struct.Struct(">H").unpack_from
_u32 = struct.Struct(">I").unpack_from
_i32 = struct.Struct(">i").unpack_from
_f64 = struct.Struct(">d").unpack_from
_u64 = struct.Struct(">Q").unpack_from


def decode(data: bytes | bytearray | memoryview) -> Any:
    """Decode one ETF term (starting with the version byte 131) that fills ``data``.

    Raises:
        TermCodecError: bad version byte, truncated or malformed data, trailing bytes.
    """
    term, end = decode_from(data, 0)
    if end != len(data):
        raise TermCodecError(f"{len(data) - end} trailing bytes after the term")
    return term


def decode_from(data: bytes | bytearray | memoryview, pos: int) -> tuple[Any, int]:
    """Decode one versioned ETF term at ``pos``; returns ``(term, position after it)``.

    Raises:
        TermTooLarge: the term is over :data:`MAX_INFLATED`, :data:`MAX_ITEMS` or
            :data:`MAX_DEPTH`, or its map keys are crafted to collide.
        TermCodecError: malformed data.
    """
    buf = bytes(data) if not isinstance(data, bytes) else data
    if pos >= len(buf) or buf[pos] != VERSION:
        raise TermCodecError("not an external term (the version byte 131 is missing)")
    pos += 1
    if pos < len(buf) and buf[pos] == COMPRESSED:
        return _guarded(_decode_compressed, buf, pos + 1)
    return _guarded(_decode, buf, pos)


def decode_body_from(data: bytes, pos: int) -> tuple[Any, int]:
    """Decode one term at ``pos`` that has no version byte (inside a larger term)."""
    return _guarded(_decode, data, pos)


class _Budget:
    """What the term being decoded may still cost: elements left, current nesting."""

    __slots__ = ("depth", "items")

    def __init__(self) -> None:
        self.items = MAX_ITEMS
        self.depth = 0

    def take(self, n: int) -> None:
        """Charge ``n`` elements of a container about to be decoded."""
        self.items -= n
        if self.items < 0:
            raise TermTooLarge(f"term has more than {MAX_ITEMS:,} elements")

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise TermTooLarge(f"term nests deeper than {MAX_DEPTH} levels")


def _guarded(func: Callable[[bytes, int, _Budget], tuple[Any, int]], buf: bytes,
             pos: int) -> tuple[Any, int]:
    """Run a decoder, turning every way malformed input can fail into TermCodecError."""
    try:
        return func(buf, pos, _Budget())
    except TermCodecError:
        raise
    except (IndexError, struct.error) as exc:
        raise TermCodecError("truncated term") from exc
    except RecursionError as exc:
        raise TermCodecError("term nested too deeply to decode") from exc
    except (TypeError, ValueError, UnicodeDecodeError, OverflowError, zlib.error) as exc:
        raise TermCodecError(f"malformed term: {exc}") from exc


def _decode_compressed(buf: bytes, pos: int, st: _Budget) -> tuple[Any, int]:
    (size,) = _u32(buf, pos)
    if size > MAX_INFLATED:
        raise TermTooLarge(f"compressed term claims {size:,} bytes inflated, over the "
                           f"limit of {MAX_INFLATED:,}")
    inflater = zlib.decompressobj()
    # max_length bounds what zlib produces, whatever the compressed data really holds
    body = inflater.decompress(buf[pos + 4:], size)
    if len(body) != size or not inflater.eof:
        raise TermCodecError("compressed term does not inflate to its declared size")
    end = len(buf) - len(inflater.unused_data)
    term, used = _decode(body, 0, st)
    if used != size:
        raise TermCodecError("compressed term has trailing bytes")
    return term, end


def _need(buf: bytes, pos: int, n: int) -> None:
    if n < 0 or pos + n > len(buf):
        raise TermCodecError("truncated term")


def _decode_atom_at(buf: bytes, pos: int, st: _Budget) -> tuple[Atom, int]:
    """Decode an atom (any atom tag) at ``pos``; pid/ref/port nodes use this."""
    term, pos = _decode(buf, pos, st)
    if type(term) is not Atom:
        raise TermCodecError("expected an atom")
    return term, pos


_atom_cache: dict[bytes, Atom] = {}


def _atom(raw: bytes, encoding: str) -> Atom:
    atom = _atom_cache.get(raw) if encoding == "utf-8" else None
    if atom is None:
        text = raw.decode(encoding)
        if len(text) > 255:
            raise TermCodecError("atom longer than 255 characters")
        atom = Atom(text)
        if encoding == "utf-8" and len(_atom_cache) < 10000:
            _atom_cache[raw] = atom
    return atom


def _decode(buf: bytes, pos: int, st: _Budget) -> tuple[Any, int]:
    tag = buf[pos]
    pos += 1
    handler = _DECODERS.get(tag)
    if handler is None:
        raise TermCodecError(f"unsupported term tag {tag}")
    return handler(buf, pos, st)


def _d_small_int(buf: bytes, pos: int, st: _Budget) -> tuple[Any, int]:
    return buf[pos], pos + 1


def _d_int(buf: bytes, pos: int, st: _Budget) -> tuple[Any, int]:
    return _i32(buf, pos)[0], pos + 4


def _d_new_float(buf: bytes, pos: int, st: _Budget) -> tuple[Any, int]:
    return _f64(buf, pos)[0], pos + 8


def _d_float(buf: bytes, pos: int, st: _Budget) -> tuple[Any, int]:
    _need(buf, pos, 31)
    text = buf[pos:pos + 31].split(b"\x00", 1)[0].decode("ascii")
    return float(text), pos + 31


def _d_small_atom_utf8(buf: bytes, pos: int, st: _Budget) -> tuple[Any, int]:
    n = buf[pos]
    pos += 1
    _need(buf, pos, n)
    return _atom(buf[pos:pos + n], "utf-8"), pos + n


def _d_atom_utf8(buf: bytes, pos: int, st: _Budget) -> tuple[Any, int]:
    (n,) = _u16(buf, pos)
    pos += 2
    _need(buf, pos, n)
    return _atom(buf[pos:pos + n], "utf-8"), pos + n


def _d_small_atom(buf: bytes, pos: int, st: _Budget) -> tuple[Any, int]:
    n = buf[pos]
    pos += 1
    _need(buf, pos, n)
    return _atom(buf[pos:pos + n], "latin-1"), pos + n


def _d_atom(buf: bytes, pos: int, st: _Budget) -> tuple[Any, int]:
    (n,) = _u16(buf, pos)
    pos += 2
    _need(buf, pos, n)
    return _atom(buf[pos:pos + n], "latin-1"), pos + n


def _d_tuple_items(buf: bytes, pos: int, n: int, st: _Budget) -> tuple[Any, int]:
    _need(buf, pos, n)  # every element takes at least one byte
    st.take(n)
    st.enter()
    items: list[Any] = []
    append = items.append
    for _ in range(n):
        item, pos = _decode(buf, pos, st)
        append(item)
    st.depth -= 1
    return tuple(items), pos


def _d_small_tuple(buf: bytes, pos: int, st: _Budget) -> tuple[Any, int]:
    return _d_tuple_items(buf, pos + 1, buf[pos], st)


def _d_large_tuple(buf: bytes, pos: int, st: _Budget) -> tuple[Any, int]:
    return _d_tuple_items(buf, pos + 4, _u32(buf, pos)[0], st)


def _d_nil(buf: bytes, pos: int, st: _Budget) -> tuple[Any, int]:
    return [], pos


def _d_string(buf: bytes, pos: int, st: _Budget) -> tuple[Any, int]:
    (n,) = _u16(buf, pos)
    pos += 2
    _need(buf, pos, n)
    st.take(n)
    return list(buf[pos:pos + n]), pos + n


def _d_list(buf: bytes, pos: int, st: _Budget) -> tuple[Any, int]:
    (n,) = _u32(buf, pos)
    pos += 4
    _need(buf, pos, n + 1)  # n elements and the tail, one byte each at least
    st.take(n)
    st.enter()
    items: list[Any] = []
    append = items.append
    for _ in range(n):
        item, pos = _decode(buf, pos, st)
        append(item)
    if buf[pos] == NIL:
        st.depth -= 1
        return items, pos + 1
    tail, pos = _decode(buf, pos, st)
    st.depth -= 1
    if not items:
        return tail, pos  # [ | T] with zero elements is just T
    return ImproperList(tuple(items), tail), pos


def _d_binary(buf: bytes, pos: int, st: _Budget) -> tuple[Any, int]:
    (n,) = _u32(buf, pos)
    pos += 4
    _need(buf, pos, n)
    return buf[pos:pos + n], pos + n


def _d_bit_binary(buf: bytes, pos: int, st: _Budget) -> tuple[Any, int]:
    (n,) = _u32(buf, pos)
    bits = buf[pos + 4]
    pos += 5
    _need(buf, pos, n)
    data = buf[pos:pos + n]
    if bits == 8 or (n == 0 and bits == 0):
        return data, pos + n
    if not 1 <= bits <= 7 or n == 0:
        raise TermCodecError(f"bitstring with {bits} bits in its last byte")
    return BitBinary(data, bits), pos + n


def _d_big(buf: bytes, pos: int, n: int) -> tuple[Any, int]:
    sign = buf[pos]
    pos += 1
    _need(buf, pos, n)
    value = int.from_bytes(buf[pos:pos + n], "little")
    return (-value if sign else value), pos + n


def _d_small_big(buf: bytes, pos: int, st: _Budget) -> tuple[Any, int]:
    return _d_big(buf, pos + 1, buf[pos])


def _d_large_big(buf: bytes, pos: int, st: _Budget) -> tuple[Any, int]:
    return _d_big(buf, pos + 4, _u32(buf, pos)[0])


def _d_map(buf: bytes, pos: int, st: _Budget) -> tuple[Any, int]:
    (n,) = _u32(buf, pos)
    pos += 4
    _need(buf, pos, 2 * n)
    st.take(2 * n)
    st.enter()
    pairs: list[tuple[Any, Any]] = []
    append = pairs.append
    for _ in range(n):
        key, pos = _decode(buf, pos, st)
        value, pos = _decode(buf, pos, st)
        append((key, value))
    st.depth -= 1
    if n > MAX_KEYS_PER_HASH:
        _check_key_hashes(pairs)
    try:
        return dict(pairs), pos
    except TypeError as exc:
        raise TermCodecError(f"map key cannot be a Python dict key: {exc}") from exc


def _check_key_hashes(pairs: list[tuple[Any, Any]]) -> None:
    """Refuse maps whose keys share a hash beyond chance (insertion would be quadratic).

    Python's dict resolves distinct hashes in a few probes however their low bits
    collide; only keys with one and the same hash (easy to craft with integers, floats,
    tuples of them, pids) make every insertion compare against all the others.
    """
    per_hash: dict[int, int] = {}
    get = per_hash.get
    for key, _ in pairs:
        try:
            h = hash(key)
        except TypeError as exc:
            raise TermCodecError(
                f"map key of type {type(key).__name__} cannot be a Python dict key"
            ) from exc
        count = get(h, 0) + 1
        if count > MAX_KEYS_PER_HASH:
            raise TermTooLarge(f"map has more than {MAX_KEYS_PER_HASH} keys with one "
                               f"hash (crafted to collide)")
        per_hash[h] = count


def _d_new_pid(buf: bytes, pos: int, st: _Budget) -> tuple[Any, int]:
    node, pos = _decode_atom_at(buf, pos, st)
    ident, serial, creation = struct.unpack_from(">III", buf, pos)
    return Pid(node, ident, serial, creation), pos + 12


def _d_pid(buf: bytes, pos: int, st: _Budget) -> tuple[Any, int]:
    node, pos = _decode_atom_at(buf, pos, st)
    ident, serial = struct.unpack_from(">II", buf, pos)
    return Pid(node, ident, serial, buf[pos + 8]), pos + 9


def _d_refs(buf: bytes, pos: int, wide: bool, st: _Budget) -> tuple[Any, int]:
    (n,) = _u16(buf, pos)
    node, pos = _decode_atom_at(buf, pos + 2, st)
    if wide:
        (creation,) = _u32(buf, pos)
        pos += 4
    else:
        creation = buf[pos]
        pos += 1
    if not 1 <= n <= 5:
        raise TermCodecError(f"reference with {n} id words")
    ids = struct.unpack_from(f">{n}I", buf, pos)
    return Reference(node, creation, ids), pos + 4 * n


def _d_newer_ref(buf: bytes, pos: int, st: _Budget) -> tuple[Any, int]:
    return _d_refs(buf, pos, True, st)


def _d_new_ref(buf: bytes, pos: int, st: _Budget) -> tuple[Any, int]:
    return _d_refs(buf, pos, False, st)


def _d_reference(buf: bytes, pos: int, st: _Budget) -> tuple[Any, int]:
    node, pos = _decode_atom_at(buf, pos, st)
    (ident,) = _u32(buf, pos)
    return Reference(node, buf[pos + 4], (ident,)), pos + 5


def _d_new_port(buf: bytes, pos: int, st: _Budget) -> tuple[Any, int]:
    node, pos = _decode_atom_at(buf, pos, st)
    ident, creation = struct.unpack_from(">II", buf, pos)
    return Port(node, ident, creation), pos + 8


def _d_v4_port(buf: bytes, pos: int, st: _Budget) -> tuple[Any, int]:
    node, pos = _decode_atom_at(buf, pos, st)
    ident, creation = struct.unpack_from(">QI", buf, pos)
    return Port(node, ident, creation), pos + 12


def _d_port(buf: bytes, pos: int, st: _Budget) -> tuple[Any, int]:
    node, pos = _decode_atom_at(buf, pos, st)
    (ident,) = _u32(buf, pos)
    return Port(node, ident, buf[pos + 4]), pos + 5


def _d_export(buf: bytes, pos: int, st: _Budget) -> tuple[Any, int]:
    module, pos = _decode_atom_at(buf, pos, st)
    function, pos = _decode_atom_at(buf, pos, st)
    arity, pos = _decode(buf, pos, st)
    if type(arity) is not int:
        raise TermCodecError("export arity is not an integer")
    return Export(module, function, arity), pos


def _d_new_fun(buf: bytes, pos: int, st: _Budget) -> tuple[Any, int]:
    (size,) = _u32(buf, pos)  # the size counts itself, not the tag
    if size < 4:
        raise TermCodecError("fun with an impossible size")
    _need(buf, pos, size)
    return OpaqueFun(buf[pos:pos + size]), pos + size


_DECODERS: dict[int, Callable[[bytes, int, _Budget], tuple[Any, int]]] = {
    SMALL_INTEGER: _d_small_int,
    INTEGER: _d_int,
    NEW_FLOAT: _d_new_float,
    FLOAT: _d_float,
    SMALL_ATOM_UTF8: _d_small_atom_utf8,
    ATOM_UTF8: _d_atom_utf8,
    SMALL_ATOM: _d_small_atom,
    ATOM: _d_atom,
    SMALL_TUPLE: _d_small_tuple,
    LARGE_TUPLE: _d_large_tuple,
    NIL: _d_nil,
    STRING: _d_string,
    LIST: _d_list,
    BINARY: _d_binary,
    BIT_BINARY: _d_bit_binary,
    SMALL_BIG: _d_small_big,
    LARGE_BIG: _d_large_big,
    MAP: _d_map,
    NEW_PID: _d_new_pid,
    PID: _d_pid,
    NEWER_REFERENCE: _d_newer_ref,
    NEW_REFERENCE: _d_new_ref,
    REFERENCE: _d_reference,
    NEW_PORT: _d_new_port,
    V4_PORT: _d_v4_port,
    PORT: _d_port,
    EXPORT: _d_export,
    NEW_FUN: _d_new_fun,
}
