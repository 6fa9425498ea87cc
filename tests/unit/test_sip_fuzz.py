"""Fuzzing: random and mutated bytes may only ever raise SipProtocolError (never crash the transport)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mediagw.errors import SipProtocolError
from mediagw.sip.framing import StreamFramer
from mediagw.sip.grammar import parse_name_addr, parse_uri, parse_via
from mediagw.sip.message import SipMessage, SipRequest, build_response, check_request, parse_message

FIXTURES = Path(__file__).parent.parent / "fixtures"
SEEDS = sorted((FIXTURES / "rfc4475").glob("*.dat")) + sorted((FIXTURES / "sip").glob("*.sip"))
SEED_BYTES = [p.read_bytes() for p in SEEDS]

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# bytes that matter to the grammar, so random input reaches deep states more often than uniform bytes
INTERESTING = [b"\r\n", b"\r\n\r\n", b" ", b"\t", b":", b";", b",", b"<", b">", b'"', b"\\", b"%", b"@",
               b"[", b"]", b"=", b"?", b"/", b"SIP/2.0", b"sip:", b"Via", b"Content-Length", b"l", b"\x00",
               b"\xff", b"0", b"9999999999999999999", b"-1", b"*"]


def exercise(message: SipMessage) -> None:
    """Touch every typed accessor, serialization and the reply path, as the endpoint would."""
    for attr in ("call_id", "cseq", "from_", "to", "from_tag", "to_tag", "vias", "top_via", "branch",
                 "max_forwards", "contacts", "is_wildcard_contact", "routes", "record_routes",
                 "content_type", "content_type_params", "expires", "content_length"):
        try:
            getattr(message, attr)
        except SipProtocolError:
            pass
    message.serialize()
    str(list(message.headers))
    if isinstance(message, SipRequest):
        try:
            check_request(message)
        except SipProtocolError:
            pass
        build_response(message, 400).serialize()


def parse_safely(data: bytes, datagram: bool = True) -> None:
    try:
        message = parse_message(data, datagram=datagram)
    except SipProtocolError as exc:
        assert isinstance(exc.status_code, int)
        partial = exc.partial
        if partial is not None:
            build_response(partial, exc.status_code).serialize()
        return
    exercise(message)
    if datagram:
        # re-parsing what we serialize gives the same bytes again
        assert parse_message(message.serialize()).serialize() == message.serialize()


def frame_safely(data: bytes, cut: int) -> None:
    framer = StreamFramer(max_message_size=4096)
    try:
        for item in framer.feed(data[:cut]) + framer.feed(data[cut:]):
            if item != b"\r\n\r\n":
                parse_safely(item, datagram=False)
    except SipProtocolError:
        pass


# -- mutations of valid messages ------------------------------------------------------------------------------

def flip(data: bytes, pos: int, value: int) -> bytes:
    pos %= max(len(data), 1)
    return data[:pos] + bytes([value]) + data[pos + 1:]


def truncate(data: bytes, pos: int, _: int) -> bytes:
    return data[:pos % (len(data) + 1)]


def duplicate(data: bytes, pos: int, length: int) -> bytes:
    pos %= max(len(data), 1)
    return data[:pos] + data[pos:pos + length] + data[pos:]


def delete_header(data: bytes, pos: int, _: int) -> bytes:
    lines = data.split(b"\r\n")
    if len(lines) < 3:
        return data
    k = 1 + pos % (len(lines) - 2)
    return b"\r\n".join(lines[:k] + lines[k + 1:])


def insert_interesting(data: bytes, pos: int, which: int) -> bytes:
    pos %= len(data) + 1
    return data[:pos] + INTERESTING[which % len(INTERESTING)] + data[pos:]


MUTATIONS: list[Callable[[bytes, int, int], bytes]] = [flip, truncate, duplicate, delete_header,
                                                        insert_interesting]

mutated = st.builds(
    lambda seed, ops: _apply(SEED_BYTES[seed], ops),
    st.integers(0, len(SEED_BYTES) - 1),
    st.lists(st.tuples(st.integers(0, len(MUTATIONS) - 1), st.integers(0, 10**6), st.integers(0, 255)),
             min_size=1, max_size=4),
)


def _apply(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    for op, pos, arg in ops:
        data = MUTATIONS[op](data, pos, arg)
    return data


random_bytes = st.one_of(
    st.binary(max_size=600),
    st.lists(st.sampled_from(INTERESTING + [b"a", b"INVITE ", b"SIP/2.0 200 OK\r\n"]), max_size=80).map(
        b"".join),
)


@FUZZ
@given(random_bytes)
def test_random_bytes_parse(data: bytes) -> None:
    parse_safely(data)
    parse_safely(data, datagram=False)


@FUZZ
@given(mutated)
def test_mutated_messages_parse(data: bytes) -> None:
    parse_safely(data)
    parse_safely(data, datagram=False)


@FUZZ
@given(mutated, st.integers(0, 5000))
def test_mutated_messages_frame(data: bytes, cut: int) -> None:
    frame_safely(data, cut % (len(data) + 1))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_grammar_functions_only_raise_protocol_errors(text: str) -> None:
    for parse in (parse_uri, parse_name_addr, parse_via):
        try:
            parse(text)
        except SipProtocolError:
            pass
