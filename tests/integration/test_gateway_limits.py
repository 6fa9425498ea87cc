"""The gateway's protective limits on a running process: RTP timeout, TCP idle timeout, auth throttling.

Raw sockets only (no SIP stack on our side), in the style of ``test_sip_robustness``: each test starts a
gateway on the shipped default profile with one limit lowered, drives it with hand-written SIP, and checks
what goes over the wire and what the gateway logs.
"""
from __future__ import annotations

import re
import socket
import struct
import time

import httpx
import pytest

from mediagw.sip.auth import build_authorization, parse_challenge
from tests.integration.conftest import GatewayFactory
from tests.integration.harness import GatewayProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

LOOPBACK = "127.0.0.1"
ADMIN = {"Authorization": "Bearer secret-admin-token"}


# ------------------------------------------------------------------------------------------------ helpers


def status_of(message: bytes) -> int:
    match = re.match(rb"SIP/2\.0 (\d{3}) ", message)
    assert match, message[:200]
    return int(match.group(1))


def header(message: bytes, name: str) -> bytes | None:
    """The first value of header ``name`` (long form only: the gateway does not send compact forms)."""
    match = re.search(rb"^" + name.encode() + rb"[ \t]*:[ \t]*(.*?)\r?$", message, flags=re.MULTILINE | re.IGNORECASE)
    return match.group(1) if match else None


def headers(message: bytes, name: str) -> list[bytes]:
    return re.findall(rb"^" + name.encode() + rb"[ \t]*:[ \t]*(.*?)\r?$", message, flags=re.MULTILINE | re.IGNORECASE)


def body_of(message: bytes) -> bytes:
    return message.partition(b"\r\n\r\n")[2]


def recv_until(sock: socket.socket, pattern: bytes, timeout: float) -> tuple[bytes, tuple[str, int]]:
    """The first datagram matching ``pattern`` within ``timeout`` (others are dropped), with its source."""
    deadline = time.monotonic() + timeout
    seen: list[bytes] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock.settimeout(max(0.01, remaining))
        try:
            data, source = sock.recvfrom(65535)
        except TimeoutError:
            break
        if re.match(pattern, data):
            return data, source
        seen.append(data.split(b"\r\n", 1)[0])
    raise AssertionError(f"nothing matching {pattern!r} within {timeout}s; saw {seen}")


def sdp_offer(media_port: int) -> bytes:
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {media_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    ).encode()


def invite(sip_port: int, call_id: str, local_port: int, media_port: int, number: str = "1000") -> bytes:
    sdp = sdp_offer(media_port)
    head = (
        f"INVITE sip:{number}@127.0.0.1:{sip_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK-{call_id}-inv;rport\r\n"
        "From: <sip:caller@127.0.0.1>;tag=lim1\r\n"
        f"To: <sip:{number}@127.0.0.1:{sip_port}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sip:caller@127.0.0.1:{local_port}>\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(sdp)}\r\n\r\n"
    ).encode()
    return head + sdp


def ack(sip_port: int, call_id: str, local_port: int, to_value: bytes, number: str = "1000") -> bytes:
    return (
        (
            f"ACK sip:{number}@127.0.0.1:{sip_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK-{call_id}-ack;rport\r\n"
            "From: <sip:caller@127.0.0.1>;tag=lim1\r\n"
        ).encode()
        + b"To: "
        + to_value
        + f"\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n".encode()
    )


def ok_for(request: bytes) -> bytes:
    """A 200 OK to ``request``: its Via, From, To, Call-ID and CSeq copied, as RFC 3261 §8.2.6 says."""
    keep = (b"via", b"v", b"from", b"f", b"to", b"t", b"call-id", b"i", b"cseq")
    lines = [line for line in request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
             if line.split(b":", 1)[0].strip().lower() in keep]
    return b"SIP/2.0 200 OK\r\n" + b"\r\n".join(lines) + b"\r\nContent-Length: 0\r\n\r\n"


def establish_call(gateway: GatewayProcess, caller: socket.socket, call_id: str, media_port: int) -> int:
    """INVITE number 1000 from ``caller`` offering ``media_port``, ACK the 200; the gateway's RTP port."""
    local_port = caller.getsockname()[1]
    caller.sendto(invite(gateway.sip_port, call_id, local_port, media_port), (LOOPBACK, gateway.sip_port))
    ok, _ = recv_until(caller, rb"SIP/2\.0 200 ", timeout=5.0)
    to_value = header(ok, "To")
    assert to_value and b"tag=" in to_value, ok
    media = re.search(rb"^m=audio (\d+) ", body_of(ok), flags=re.MULTILINE)
    assert media, f"no audio line in the 200's SDP answer: {ok!r}"
    caller.sendto(ack(gateway.sip_port, call_id, local_port, to_value), (LOOPBACK, gateway.sip_port))
    return int(media.group(1))


def rtp_packet(sequence: int, timestamp: int, ssrc: int = 0x1234ABCD) -> bytes:
    """One 20 ms PCMU packet (payload type 0) of silence."""
    return struct.pack("!BBHII", 0x80, 0, sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc) + b"\xff" * 160


def udp_socket(address: str = LOOPBACK) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, 0))
    return sock


# -------------------------------------------------------------------------------------------- RTP timeout


def test_call_without_rtp_is_ended_with_bye_after_rtp_timeout(start_gateway: GatewayFactory) -> None:
    gateway = start_gateway(overrides={"timeout": 2.0})
    with udp_socket() as caller, udp_socket() as media:
        established = time.monotonic()
        establish_call(gateway, caller, "rtp-timeout-1", media.getsockname()[1])
        # we send no RTP at all: within about timeout + a little the gateway hangs up
        bye, source = recv_until(caller, rb"BYE ", timeout=6.0)
        elapsed = time.monotonic() - established
        assert header(bye, "Call-ID") == b"rtp-timeout-1"
        assert elapsed >= 1.5, f"BYE after {elapsed:.2f}s, before the 2 s RTP timeout"
        caller.sendto(ok_for(bye), source)
    deadline = time.monotonic() + 3.0
    while "rtp-timeout" not in gateway.read_log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "rtp-timeout" in gateway.read_log()
    # and the call is gone from the control API
    calls = httpx.get(f"{gateway.api_url}/api/v1/calls", headers=ADMIN, timeout=5)
    assert calls.status_code == 200 and calls.json() == [], calls.text


def test_call_with_rtp_outlives_the_rtp_timeout(start_gateway: GatewayFactory) -> None:
    gateway = start_gateway(overrides={"timeout": 2.0})
    with udp_socket() as caller, udp_socket() as media:
        gateway_rtp_port = establish_call(gateway, caller, "rtp-alive-1", media.getsockname()[1])
        caller.setblocking(False)
        sequence, timestamp = 1000, 160_000
        started = time.monotonic()
        next_send = started
        bye = None
        while time.monotonic() - started < 4.0:  # twice the RTP timeout, with RTP every 20 ms
            now = time.monotonic()
            if now >= next_send:
                media.sendto(rtp_packet(sequence, timestamp), (LOOPBACK, gateway_rtp_port))
                sequence, timestamp, next_send = sequence + 1, timestamp + 160, next_send + 0.02
            try:
                data = caller.recv(65535)
            except (BlockingIOError, InterruptedError):
                data = b""
            if data.startswith(b"BYE "):
                bye = data
                break
            time.sleep(max(0.0, min(0.005, next_send - time.monotonic())))
        assert bye is None, f"the gateway ended a call that sent RTP after {time.monotonic() - started:.2f}s"
        assert "rtp-timeout" not in gateway.read_log()
        # once our RTP stops, the same call does time out: the RTP was what kept it up
        bye, source = recv_until(caller, rb"BYE ", timeout=6.0)
        assert header(bye, "Call-ID") == b"rtp-alive-1"
        caller.sendto(ok_for(bye), source)


# --------------------------------------------------------------------------------------- TCP idle timeout


def tcp_options(sip_port: int, local_port: int, index: int) -> bytes:
    return (
        f"OPTIONS sip:127.0.0.1:{sip_port};transport=tcp SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 127.0.0.1:{local_port};branch=z9hG4bK-tcpidle-{index}\r\n"
        "From: <sip:probe@127.0.0.1>;tag=tcp1\r\n"
        f"To: <sip:127.0.0.1:{sip_port}>\r\n"
        f"Call-ID: tcp-idle-{local_port}\r\n"
        f"CSeq: {index} OPTIONS\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def read_response(sock: socket.socket, timeout: float = 3.0) -> bytes:
    """One complete response (head and Content-Length body) from a stream socket."""
    sock.settimeout(timeout)
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65535)
        assert chunk, f"connection closed mid-response: {buffer!r}"
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    length = int(header(head + b"\r\n", "Content-Length") or b"0")
    while len(rest) < length:
        chunk = sock.recv(65535)
        assert chunk, "connection closed mid-body"
        rest += chunk
    return head + b"\r\n\r\n" + rest[:length]


def wait_closed(sock: socket.socket, timeout: float) -> float | None:
    """Seconds until the peer closes ``sock`` (recv gives b""), or None when it stays open ``timeout``."""
    started = time.monotonic()
    deadline = started + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining)
        try:
            data = sock.recv(65535)
        except TimeoutError:
            return None
        except ConnectionResetError:
            return time.monotonic() - started
        if not data:
            return time.monotonic() - started
        raise AssertionError(f"unexpected data on an idle connection: {data[:200]!r}")
    return None


def test_idle_tcp_connection_is_closed(start_gateway: GatewayFactory) -> None:
    gateway = start_gateway(overrides={"tcp_idle_timeout": 1.0})
    with socket.create_connection((LOOPBACK, gateway.sip_port), timeout=3) as conn:
        local_port = conn.getsockname()[1]
        conn.sendall(tcp_options(gateway.sip_port, local_port, 1))
        assert status_of(read_response(conn)) == 200
        closed_after = wait_closed(conn, timeout=5.0)
        assert closed_after is not None, "the gateway kept an idle TCP connection open for 5 s (timeout 1 s)"
    assert "closing idle TCP connection" in gateway.read_log()


def test_busy_tcp_connection_stays_open(start_gateway: GatewayFactory) -> None:
    gateway = start_gateway(overrides={"tcp_idle_timeout": 1.0})
    with socket.create_connection((LOOPBACK, gateway.sip_port), timeout=3) as conn:
        local_port = conn.getsockname()[1]
        started = time.monotonic()
        index = 0
        while time.monotonic() - started < 3.0:  # three idle timeouts, with a request every 0.5 s
            index += 1
            try:
                conn.sendall(tcp_options(gateway.sip_port, local_port, index))
                reply = read_response(conn)
            except (OSError, AssertionError) as exc:
                raise AssertionError(
                    f"connection with traffic every 0.5 s lost after {time.monotonic() - started:.2f}s: {exc}"
                ) from exc
            assert status_of(reply) == 200
            time.sleep(0.5)
        assert index >= 5
        # and it is still usable now
        conn.sendall(tcp_options(gateway.sip_port, local_port, index + 1))
        assert status_of(read_response(conn)) == 200


# ------------------------------------------------------------------------------------ auth failure throttle


def register(sip_port: int, local_port: int, cseq: int, authorization: str | None = None,
             user: str = "agent1", source: str = LOOPBACK) -> bytes:
    auth = f"Authorization: {authorization}\r\n" if authorization else ""
    return (
        f"REGISTER sip:127.0.0.1:{sip_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {source}:{local_port};branch=z9hG4bK-reg-{local_port}-{cseq};rport\r\n"
        f"From: <sip:{user}@127.0.0.1>;tag=reg{local_port}\r\n"
        f"To: <sip:{user}@127.0.0.1>\r\n"
        f"Call-ID: reg-{local_port}@{source}\r\n"
        f"CSeq: {cseq} REGISTER\r\n"
        f"Contact: <sip:{user}@{source}:{local_port}>\r\n"
        "Expires: 60\r\n"
        "Max-Forwards: 70\r\n"
        f"{auth}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def exchange(sock: socket.socket, data: bytes, sip_port: int) -> bytes:
    sock.sendto(data, (LOOPBACK, sip_port))
    reply, _ = recv_until(sock, rb"SIP/2\.0 [2-6]\d\d ", timeout=3.0)
    return reply


def answer_challenge(reply: bytes, sip_port: int, password: str, cnonce: str, user: str = "agent1") -> str:
    challenges = headers(reply, "WWW-Authenticate")
    assert challenges, f"401 without WWW-Authenticate: {reply!r}"
    challenge = parse_challenge(challenges[0].decode())
    return build_authorization(challenge, method="REGISTER", uri=f"sip:127.0.0.1:{sip_port}",
                               username=user, password=password, cnonce=cnonce)


def test_repeated_failed_digest_auth_is_throttled_and_logged(start_gateway: GatewayFactory) -> None:
    gateway = start_gateway()
    attacker_address = "127.0.0.2"  # a loopback address of its own, so the block is seen to be per source
    with udp_socket(attacker_address) as attacker:
        port = attacker.getsockname()[1]
        cseq = 1
        reply = exchange(attacker, register(gateway.sip_port, port, cseq, source=attacker_address), gateway.sip_port)
        assert status_of(reply) == 401  # no credentials yet: a challenge, not counted as a failure
        codes = []
        last_challenge = reply
        for attempt in range(7):
            cseq += 1
            if status_of(reply) == 401:
                last_challenge = reply
                authorization = answer_challenge(reply, gateway.sip_port, "wrong-password", f"cn{attempt}")
            # once refused with 403 we keep sending the last (wrong) credentials, as a guessing script would
            reply = exchange(attacker, register(gateway.sip_port, port, cseq, authorization, source=attacker_address),
                             gateway.sip_port)
            codes.append(status_of(reply))
            if status_of(reply) == 403:
                assert not headers(reply, "WWW-Authenticate"), f"a blocked source was challenged: {reply!r}"
        # max_auth_failures = 5: five wrong answers are challenged again, then the source is refused
        assert codes[:5] == [401] * 5, codes
        assert codes[5:] == [403, 403], codes
        # blocked means blocked: the right password from that source is refused too, unread
        cseq += 1
        authorization = answer_challenge(last_challenge, gateway.sip_port, "secret-agent1", "cn-right")
        reply = exchange(attacker, register(gateway.sip_port, port, cseq, authorization, source=attacker_address),
                         gateway.sip_port)
        assert status_of(reply) == 403 and not headers(reply, "WWW-Authenticate"), reply

    # the block names the source in a warning
    log = gateway.read_log()
    warnings = [line for line in log.splitlines() if "WARNING" in line and re.search(r"\b127\.0\.0\.2\b", line)]
    assert warnings and any("block" in line for line in warnings), log[-3000:]

    # another source is not affected: agent1 registers from 127.0.0.1 with the right password
    with udp_socket() as agent:
        port = agent.getsockname()[1]
        reply = exchange(agent, register(gateway.sip_port, port, 1), gateway.sip_port)
        assert status_of(reply) == 401
        authorization = answer_challenge(reply, gateway.sip_port, "secret-agent1", "cn-good")
        reply = exchange(agent, register(gateway.sip_port, port, 2, authorization), gateway.sip_port)
        assert status_of(reply) == 200, reply
