"""Stream framing by Content-Length (RFC 3261 §18.3), keep-alives (RFC 5626 §4.4.1), size limits."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from mediagw.errors import SipMessageTooLarge, SipProtocolError
from mediagw.sip.framing import KEEPALIVE_PING, StreamFramer
from mediagw.sip.message import SipRequest, SipResponse, parse_message

FIXTURES = Path(__file__).parent.parent / "fixtures"

# every fixture that is a complete, well-framed message on its own
STREAM_FIXTURES = [
    FIXTURES / "sip" / f"{name}.sip"
    for name in ("pjsua_invite", "register_auth", "response_200_invite", "response_401", "response_180",
                 "compact_forms", "folded")
] + [FIXTURES / "rfc4475" / f"{name}.dat"
     for name in ("wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq", "semiuri",
                  "transports", "mpart01", "unreason", "noreason")]


def feed_all(framer: StreamFramer, chunks: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for chunk in chunks:
        out.extend(framer.feed(chunk))
    return out


@pytest.mark.parametrize("path", STREAM_FIXTURES, ids=lambda p: p.stem)
def test_byte_at_a_time(path: Path) -> None:
    data = path.read_bytes()
    framer = StreamFramer()
    out = feed_all(framer, [data[i:i + 1] for i in range(len(data))])
    assert out == [data]
    assert framer.buffered == 0
    msg = parse_message(out[0], datagram=False)
    assert msg.serialize() == data


def test_several_messages_in_one_read() -> None:
    pair = (FIXTURES / "sip" / "bye_tcp_pair.sip").read_bytes()
    framer = StreamFramer()
    out = framer.feed(pair)
    assert len(out) == 2
    assert b"".join(out) == pair
    assert isinstance(parse_message(out[0], datagram=False), SipRequest)
    assert isinstance(parse_message(out[1], datagram=False), SipResponse)


def test_all_fixtures_concatenated_random_chunks() -> None:
    messages = [p.read_bytes() for p in STREAM_FIXTURES]
    stream = b"".join(messages)
    rng = random.Random(4475)
    for _ in range(20):
        chunks: list[bytes] = []
        i = 0
        while i < len(stream):
            size = rng.choice([1, 2, 3, 7, 64, 500, 1500, 4096])
            chunks.append(stream[i:i + size])
            i += size
        framer = StreamFramer()
        assert feed_all(framer, chunks) == messages


def test_partial_read_waits_for_body() -> None:
    data = (FIXTURES / "sip" / "pjsua_invite.sip").read_bytes()
    head_end = data.index(b"\r\n\r\n") + 4
    framer = StreamFramer()
    assert framer.feed(data[:head_end - 1]) == []
    assert framer.feed(data[head_end - 1:head_end + 10]) == []
    assert framer.buffered == head_end + 10
    assert framer.feed(data[head_end + 10:]) == [data]


def test_keepalive_ping_between_messages() -> None:
    msg = (FIXTURES / "sip" / "response_180.sip").read_bytes()
    framer = StreamFramer()
    out = framer.feed(KEEPALIVE_PING + msg + KEEPALIVE_PING + KEEPALIVE_PING)
    assert out == [KEEPALIVE_PING, msg, KEEPALIVE_PING, KEEPALIVE_PING]


def test_keepalive_byte_at_a_time() -> None:
    framer = StreamFramer()
    out = feed_all(framer, [b"\r", b"\n", b"\r", b"\n"])
    assert out == [b"\r\n\r\n"]
    assert framer.buffered == 0


def test_stray_crlf_before_message_ignored() -> None:
    msg = (FIXTURES / "sip" / "response_180.sip").read_bytes()
    framer = StreamFramer()
    assert framer.feed(b"\r\n") == []
    assert framer.feed(msg) == [msg]


def test_missing_content_length_is_an_error() -> None:
    data = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nCall-ID: x\r\n\r\n"
    framer = StreamFramer()
    with pytest.raises(SipProtocolError, match="Content-Length") as info:
        framer.feed(data)
    assert info.value.status_code == 400
    with pytest.raises(SipProtocolError):  # the stream stays broken: close it
        framer.feed(b"more")


@pytest.mark.parametrize("value", [b"-999", b"five", b"1 2", b"99999999999"])
def test_bad_content_length_is_an_error(value: bytes) -> None:
    data = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: " + value + b"\r\n\r\n"
    with pytest.raises(SipProtocolError) as info:
        StreamFramer().feed(data)
    assert info.value.status_code == 400


def test_conflicting_content_length_is_an_error() -> None:
    data = (FIXTURES / "rfc4475" / "mcl01.dat").read_bytes()
    with pytest.raises(SipProtocolError, match="conflicting") as info:
        StreamFramer().feed(data)
    assert isinstance(info.value.partial, SipRequest)  # type: ignore[attr-defined]


def test_clerr_on_a_stream_waits() -> None:
    # RFC 4475 §3.1.2.2: over TCP the receiver can only wait for the missing octets
    data = (FIXTURES / "rfc4475" / "clerr.dat").read_bytes()
    framer = StreamFramer()
    assert framer.feed(data) == []
    assert framer.buffered == len(data)


def test_folded_and_compact_content_length() -> None:
    data = (b"OPTIONS sip:a@b SIP/2.0\r\nl:\r\n 3\r\nCall-ID: x\r\n\r\nabc"
            b"OPTIONS sip:a@b SIP/2.0\r\ncontent-LENGTH : 0\r\n\r\n")
    first = data[:data.index(b"abc") + 3]
    assert StreamFramer().feed(data) == [first, data[len(first):]]


def test_oversize_content_length_is_513() -> None:
    data = (FIXTURES / "sip" / "pjsua_invite.sip").read_bytes()
    framer = StreamFramer(max_message_size=600)
    with pytest.raises(SipMessageTooLarge) as info:
        framer.feed(data)
    assert info.value.status_code == 513
    partial = info.value.partial  # type: ignore[attr-defined]
    assert isinstance(partial, SipRequest)
    assert partial.call_id == "4f3e2d1c-0b9a-4876-a5b4-c3d2e1f0a9b8"


def test_endless_header_block_is_513() -> None:
    framer = StreamFramer(max_message_size=1000)
    framer.feed(b"OPTIONS sip:a@b SIP/2.0\r\n")
    with pytest.raises(SipMessageTooLarge):
        for _ in range(100):
            framer.feed(b"X-Filler: " + b"y" * 20 + b"\r\n")


def test_default_limit_is_65535() -> None:
    body = b"x" * 65535
    data = b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 65535\r\n\r\n" + body
    with pytest.raises(SipMessageTooLarge):
        StreamFramer().feed(data)
    small = b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 60000\r\n\r\n" + body[:60000]
    assert StreamFramer().feed(small) == [small]


def test_large_body_byte_at_a_time_is_linear() -> None:
    body = b"y" * 20000
    data = b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 20000\r\n\r\n" + body
    framer = StreamFramer()
    out = feed_all(framer, [data[i:i + 1] for i in range(len(data))])
    assert out == [data]
