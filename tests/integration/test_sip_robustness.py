"""Bad input against a running gateway: right error replies, and it keeps serving everyone else."""
from __future__ import annotations

import re
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.integration.conftest import GatewayFactory
from tests.integration.harness import GatewayProcess, sip_exchange

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "rfc4475"
# RFC 4475 §3.1.1 (valid) and §3.1.2 (invalid, plus the §3.3 extras); baddate is one an element may
# accept (RFC 4475 §3.1.2.8: Date is not used by mediagw), so it is among the ones answered sensibly.
VALID = "wsinv intmeth esc01 escnull esc02 lwsdisp longreq dblreq semiuri transports mpart01 unreason noreason baddate"
INVALID = ("badinv01 clerr ncl scalar02 scalarlg quotbal ltgtruri lwsruri lwsstart trws escruri regbadct badaspec "
           "baddn badvers mismatch01 mismatch02 bigcode insuf novelsc multi01 mcl01")


def options(port: int, branch: str = "z9hG4bKopt1", call_id: str = "opt-1") -> bytes:
    return (
        f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:9;branch={branch};rport\r\n"
        "From: <sip:probe@127.0.0.1>;tag=p1\r\n"
        f"To: <sip:127.0.0.1:{port}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def status_of(reply: bytes) -> int:
    match = re.match(rb"SIP/2\.0 (\d{3}) ", reply)
    assert match, reply[:200]
    return int(match.group(1))


def assert_still_serving(gateway: GatewayProcess, tag: str) -> None:
    replies = sip_exchange(options(gateway.sip_port, branch=f"z9hG4bK{tag}", call_id=f"alive-{tag}"),
                           gateway.sip_port)
    assert replies and status_of(replies[0]) == 200, f"gateway stopped answering after {tag}"


def test_options_is_answered_with_capabilities(gateway: GatewayProcess) -> None:
    (reply,) = sip_exchange(options(gateway.sip_port), gateway.sip_port)
    assert status_of(reply) == 200
    text = reply.decode()
    assert re.search(r"^Allow:.*INVITE.*", text, flags=re.M | re.I)
    assert re.search(r"^Accept: *application/sdp", text, flags=re.M | re.I)
    assert re.search(r"^Supported:", text, flags=re.M | re.I)
    # RFC 3581: rport filled in and received added, since we sent from another port than 9
    assert re.search(r"rport=\d+", text) and "received=127.0.0.1" in text


def test_rfc4475_invalid_messages_get_4xx_or_silence(gateway: GatewayProcess) -> None:
    invalid = [FIXTURES / f"{name}.dat" for name in INVALID.split()]
    for path in invalid:
        data = path.read_bytes()
        if len(data) > 60000:
            continue
        replies = sip_exchange(data, gateway.sip_port, timeout=0.5)
        for reply in replies:
            code = status_of(reply)
            assert 400 <= code < 600, f"{path.name}: {code}"
        assert_still_serving(gateway, path.stem)


def test_rfc4475_valid_messages_get_sensible_answers(gateway: GatewayProcess) -> None:
    valid = [FIXTURES / f"{name}.dat" for name in VALID.split()]
    for path in valid:
        data = path.read_bytes()
        replies = sip_exchange(data, gateway.sip_port, timeout=0.5)
        for reply in replies:
            assert 100 <= status_of(reply) < 700, path.name
        assert_still_serving(gateway, path.stem)


def test_garbage_and_truncated_datagrams_do_not_stop_the_gateway(gateway: GatewayProcess) -> None:
    base = options(gateway.sip_port)
    samples = [b"", b"\x00" * 100, b"\xff\xfe garbage \r\n\r\n", base[:40], base[:-10], base.replace(b"SIP/2.0", b"SIP/7.0"),
               b"INVITE sip:x SIP/2.0\r\n" + b"Via: " + b"a" * 3000 + b"\r\n\r\n"]
    for index, data in enumerate(samples):
        sip_exchange(data, gateway.sip_port, timeout=0.3)
        assert_still_serving(gateway, f"garbage{index}")


def test_bad_version_gets_505(gateway: GatewayProcess) -> None:
    data = options(gateway.sip_port).replace(b"OPTIONS sip:127.0.0.1", b"OPTIONS sip:127.0.0.1", 1)
    data = data.replace(b" SIP/2.0\r\n", b" SIP/7.0\r\n", 1)
    replies = sip_exchange(data, gateway.sip_port)
    assert replies and status_of(replies[0]) == 505


def test_oversize_messages_get_513(start_gateway: GatewayFactory) -> None:
    gateway = start_gateway(overrides={"max_message_size": 2000})
    big = options(gateway.sip_port).replace(b"Content-Length: 0\r\n", b"X-Padding: " + b"p" * 3000 + b"\r\nContent-Length: 0\r\n")
    (reply,) = sip_exchange(big, gateway.sip_port)
    assert status_of(reply) == 513
    replies = sip_exchange(big, gateway.sip_port, transport="tcp")
    assert replies and status_of(replies[0]) == 513
    assert_still_serving(gateway, "after-513")


def invite(port: int, call_id: str, local_port: int, branch: str) -> bytes:
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    ).encode()
    head = (
        f"INVITE sip:1000@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch={branch};rport\r\n"
        "From: <sip:caller@127.0.0.1>;tag=c1\r\n"
        f"To: <sip:1000@127.0.0.1:{port}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sip:caller@127.0.0.1:{local_port}>\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(sdp)}\r\n\r\n"
    ).encode()
    return head + sdp


def read_until(sock: socket.socket, pattern: bytes, timeout: float = 5.0) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(65535)
        except (TimeoutError, socket.timeout):
            break
        if re.match(pattern, data):
            return data
    raise AssertionError(f"nothing matching {pattern!r} within {timeout}s")


def test_drain_refuses_new_invites_with_503_and_ends_calls(gateway: GatewayProcess) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as caller:
        caller.bind(("127.0.0.1", 0))
        local_port = caller.getsockname()[1]
        caller.sendto(invite(gateway.sip_port, "drain-1", local_port, "z9hG4bKd1"), ("127.0.0.1", gateway.sip_port))
        ok = read_until(caller, rb"SIP/2\.0 200 ")
        to_header = re.search(rb"^To: (.*)\r$", ok, flags=re.M | re.I)
        assert to_header
        ack = (
            f"ACK sip:1000@127.0.0.1:{gateway.sip_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bKd1ack;rport\r\n"
            "From: <sip:caller@127.0.0.1>;tag=c1\r\n"
        ).encode() + b"To: " + to_header.group(1) + (
            "\r\nCall-ID: drain-1\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        caller.sendto(ack, ("127.0.0.1", gateway.sip_port))
        time.sleep(0.2)
        gateway.process.send_signal(signal.SIGTERM)
        bye = read_until(caller, rb"BYE ")  # the gateway ends our call; we hold our 200 back for now
        caller.sendto(invite(gateway.sip_port, "drain-2", local_port, "z9hG4bKd2"), ("127.0.0.1", gateway.sip_port))
        refused = read_until(caller, rb"SIP/2\.0 503 ")
        assert re.search(rb"^Retry-After: *\d+", refused, flags=re.M | re.I)
        # now answer the BYE; the gateway finishes draining and exits 0
        lines = bye.split(b"\r\n")
        copy = [line for line in lines if line.split(b":", 1)[0].lower() in (b"via", b"v", b"from", b"f", b"to", b"t",
                                                                           b"call-id", b"i", b"cseq")]
        reply = b"SIP/2.0 200 OK\r\n" + b"\r\n".join(copy) + b"\r\nContent-Length: 0\r\n\r\n"
        caller.sendto(reply, ("127.0.0.1", gateway.sip_port))
        assert gateway.process.wait(timeout=10) == 0
