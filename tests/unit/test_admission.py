"""Admission: trunks by source (and digest where configured), registered agents, and 403 for the rest."""
from __future__ import annotations

from mediagw.admission import Admission
from mediagw.config import profile_from_dict
from mediagw.sip.auth import AuthThrottle, DigestAuthenticator, build_authorization, parse_challenge
from mediagw.sip.message import parse_message
from mediagw.sip.registrar import Registrar

PROFILE = {
    "trunks": [
        {"name": "open", "sources": ["198.51.100.0/24"]},
        {"name": "secured", "sources": ["203.0.113.7"], "username": "carrier", "password": "s3cret-trunk"},
    ],
    "agents": [{"id": "agent1", "password": "agent-pass"}],
}


def invite(authorization: str = "") -> bytes:
    extra = f"Authorization: {authorization}\r\n" if authorization else ""
    return (
        "INVITE sip:1000@192.0.2.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 203.0.113.7:5060;branch=z9hG4bKadm1\r\n"
        "From: <sip:+15550100@203.0.113.7>;tag=a\r\nTo: <sip:1000@192.0.2.1>\r\n"
        f"Call-ID: adm-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
    ).encode()


def make() -> tuple[Admission, Registrar]:
    profile = profile_from_dict(PROFILE)
    registrar = Registrar(DigestAuthenticator("mediagw", {"agent1": "agent-pass"}.get), AuthThrottle())
    return Admission(profile, registrar, AuthThrottle()), registrar


def test_open_trunk_source_is_admitted_and_strangers_get_403() -> None:
    admission, _ = make()
    request = parse_message(invite())
    assert admission(request, ("198.51.100.20", 5060), "udp", 0.0) is None
    refused = admission(request, ("192.0.2.99", 5060), "udp", 0.0)
    assert refused is not None and refused.status_code == 403


def test_trunk_with_credentials_is_challenged_then_admitted() -> None:
    admission, _ = make()
    source = ("203.0.113.7", 5060)
    challenge = admission(parse_message(invite()), source, "udp", 1.0)
    assert challenge is not None and challenge.status_code == 401
    values = challenge.headers.get_all("WWW-Authenticate")
    assert values and values[0].startswith("Digest ")
    header = build_authorization(parse_challenge(values[0]), method="INVITE", uri="sip:1000@192.0.2.1",
                                 username="carrier", password="s3cret-trunk", cnonce="c0ffee")
    assert admission(parse_message(invite(header)), source, "udp", 2.0) is None
    wrong = build_authorization(parse_challenge(values[0]), method="INVITE", uri="sip:1000@192.0.2.1",
                                username="carrier", password="guess", cnonce="c0ffee")
    again = admission(parse_message(invite(wrong)), source, "udp", 3.0)
    assert again is not None and again.status_code == 401


def register(authorization: str = "") -> bytes:
    extra = f"Authorization: {authorization}\r\n" if authorization else ""
    return (
        "REGISTER sip:192.0.2.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.50:40000;branch=z9hG4bKreg1\r\n"
        "From: <sip:agent1@192.0.2.1>;tag=r\r\nTo: <sip:agent1@192.0.2.1>\r\n"
        f"Call-ID: reg-1\r\nCSeq: {2 if authorization else 1} REGISTER\r\nContact: <sip:agent1@192.0.2.50:40000>\r\n"
        f"Expires: 300\r\n{extra}Content-Length: 0\r\n\r\n"
    ).encode()


def test_registered_agent_source_is_admitted() -> None:
    admission, registrar = make()
    source = ("192.0.2.50", 40000)
    refused = admission(parse_message(invite()), source, "udp", 0.0)
    assert refused is not None and refused.status_code == 403
    challenge = registrar.handle_register(parse_message(register()), source, "udp", 1.0)
    assert challenge.status_code == 401
    header = build_authorization(parse_challenge(challenge.headers.get_all("WWW-Authenticate")[0]),
                                 method="REGISTER", uri="sip:192.0.2.1", username="agent1",
                                 password="agent-pass", cnonce="beef")
    assert registrar.handle_register(parse_message(register(header)), source, "udp", 2.0).status_code == 200
    assert admission(parse_message(invite()), source, "udp", 3.0) is None
    assert admission.identify(source, 3.0) is not None and admission.identify(source, 3.0).name == "agent1"
