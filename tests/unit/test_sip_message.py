"""SIP messages: RFC 4475 torture tests, raw fixtures field by field, byte-exact round trips, building."""
from __future__ import annotations

from pathlib import Path

import pytest

from mediagw.errors import SipMessageTooLarge, SipProtocolError
from mediagw.sip.grammar import NameAddr, Via, parse_uri
from mediagw.sip.message import (
    Headers,
    SipRequest,
    SipResponse,
    build_response,
    check_request,
    parse_message,
)

FIXTURES = Path(__file__).parent.parent / "fixtures"
RFC4475 = FIXTURES / "rfc4475"
SIP = FIXTURES / "sip"


def load(name: str) -> bytes:
    """Raw bytes of a fixture: ``rfc4475/<name>.dat`` or ``sip/<name>.sip``."""
    path = RFC4475 / f"{name}.dat"
    return path.read_bytes() if path.exists() else (SIP / f"{name}.sip").read_bytes()


def request(name: str) -> SipRequest:
    msg = parse_message(load(name))
    assert isinstance(msg, SipRequest)
    return msg


def response(name: str) -> SipResponse:
    msg = parse_message(load(name))
    assert isinstance(msg, SipResponse)
    return msg


# =============================================================================================================
# RFC 4475 §3.1.1: valid messages. Each must parse, have the right key fields and round-trip byte for byte.
# =============================================================================================================

VALID = {  # fixture -> RFC 4475 section
    "wsinv": "3.1.1.1", "intmeth": "3.1.1.2", "esc01": "3.1.1.3", "escnull": "3.1.1.4", "esc02": "3.1.1.5",
    "lwsdisp": "3.1.1.6", "longreq": "3.1.1.7", "dblreq": "3.1.1.8", "semiuri": "3.1.1.9",
    "transports": "3.1.1.10", "mpart01": "3.1.1.11", "unreason": "3.1.1.12", "noreason": "3.1.1.13",
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_rfc4475_valid_parses_and_round_trips(name: str) -> None:
    data = load(name)
    msg = parse_message(data)
    out = msg.serialize()
    if name == "dblreq":  # RFC 4475 §3.1.1.8 / RFC 3261 §18.3: octets after the body are discarded
        assert out == data[:data.index(b"\r\n\r\n") + 4]
    else:
        assert out == data
    # the core accessors work on every valid message
    assert msg.call_id
    assert msg.cseq[0] >= 0
    assert msg.from_.uri.scheme in ("sip", "sips", "tel")
    assert msg.vias


def test_wsinv() -> None:
    msg = request("wsinv")
    assert msg.method == "INVITE"
    assert msg.uri.user == "vivekg"
    assert msg.uri.host == "chair-dnrc.example.com"
    assert msg.uri.params == {"unknownparam": None}
    assert msg.to.uri.user == "vivekg"
    assert msg.to_tag == "1918181833n"
    assert msg.from_.display_name == 'J Rosenberg \\"'
    assert msg.from_tag == "98asjd8"
    assert msg.max_forwards == 68
    assert msg.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert msg.content_length == 150
    assert msg.cseq == (9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in msg.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert msg.headers.get("Subject") == ""
    assert msg.headers.get("s") == ""
    assert msg.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert msg.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert msg.content_type == "application/sdp"
    route = msg.routes[0]
    assert route.uri.host == "services.example.com"
    assert route.uri.params == {"lr": None, "unknownwith": "value", "unknown-no-value": None}
    [contact] = msg.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.uri.user == "jdrosen"
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert len(msg.body) == 150


def test_intmeth() -> None:
    msg = request("intmeth")
    assert msg.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert msg.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert msg.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert msg.uri.host == "example.com"
    assert msg.branch == "z9hG4bK-.!%66*_+`'~"
    assert msg.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert msg.to.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert msg.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert msg.from_.params["fromparam''~+*_!.-%"] == '"работающий"'
    assert msg.from_tag == "_token~1'+`*%!-."
    assert msg.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert msg.cseq == (139122385, "!interesting-Method0123456789_*+`.%indeed'~")
    assert msg.max_forwards == 255
    assert msg.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"
    check_request(msg)  # syntactically and semantically fine; an endpoint answers 501 (unknown method)


def test_esc01() -> None:
    msg = request("esc01")
    assert msg.uri.user == "sips:user@example.com"
    assert msg.uri.host == "example.net"
    assert str(msg.uri) == "sip:sips%3Auser%40example.com@example.net"
    assert msg.to.uri.user == "user"
    assert msg.from_.uri.user == "I have spaces"
    assert msg.call_id == "esc01.239409asdfakjkn23onasd0-3234"
    assert msg.content_type == "application/sdp"
    [contact] = msg.contacts
    assert contact.uri.user == "caller"
    assert contact.uri.params == {"lr": None, "name": "value%41"}


def test_escnull() -> None:
    msg = request("escnull")
    assert msg.to.uri.user == "null-\x00-null"
    assert msg.from_.uri.user == "null-\x00-null"
    assert [c.uri.user for c in msg.contacts] == ["\x00", "\x00\x00"]
    assert msg.content_length == 0


def test_esc02() -> None:
    msg = request("esc02")
    assert msg.method == "RE%47IST%45R"  # not REGISTER: % is no escape in a method
    assert msg.cseq == (29344, "RE%47IST%45R")
    assert msg.to.display_name == "%Z%45"
    assert msg.branch == "z9hG4bK209%fzsnel234"
    assert [c.uri.user for c in msg.contacts] == ["alias1", "alias3"]  # two Contacts, not three
    assert msg.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    check_request(msg)


def test_lwsdisp() -> None:
    msg = request("lwsdisp")
    assert msg.from_.display_name == "caller"
    assert msg.from_.uri.user == "caller"
    assert msg.from_tag == "323"


def test_longreq() -> None:
    msg = request("longreq")
    assert msg.to.display_name == "I have a user name of " + "extreme" * 10 + " proportion"
    assert msg.to.uri.port == 6000
    assert msg.to.uri.params["unknownparam1"] == "very" + "long" * 20 + "value"
    assert msg.to.uri.params["longparam" + "name" * 25] == "shortvalue"
    assert msg.to.uri.params["very" + "long" * 25 + "parameternamewithnovalue"] is None
    assert msg.from_tag == "12" + "982" * 50 + "424"
    assert msg.from_.uri.user == "amazinglylongcallername" * 5
    assert msg.call_id == "longreq.one" + "really" * 20 + "longcallid"
    vias = msg.vias
    assert len(vias) == 34
    assert [v.host for v in vias[:33]] == [f"sip{k}.example.com" for k in range(33, 0, -1)]
    assert vias[-1].received == "192.0.2.5"
    assert vias[-1].branch == "very" + "long" * 50 + "branchvalue"
    assert len(msg.headers.get_all("v")) == 34
    assert msg.content_length == 150


def test_dblreq_extra_octets_ignored() -> None:
    msg = request("dblreq")
    assert msg.method == "REGISTER"
    assert msg.body == b""
    assert msg.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"
    assert msg.contacts[0].uri.user == "j.user"


def test_semiuri() -> None:
    msg = request("semiuri")
    assert msg.uri.user == "user;par=u@example.net"
    assert msg.uri.host == "example.com"
    assert msg.uri.params == {}
    assert msg.headers.get_all("Accept") == [
        "application/sdp", "application/pkcs7-mime", "multipart/mixed", "multipart/signed", "message/sip",
        "message/sipfrag"]


def test_transports() -> None:
    msg = request("transports")
    assert [v.transport for v in msg.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert msg.call_id == "transports.kijh4akdnaqjkwendsasfdj"


def test_mpart01_binary_body() -> None:
    msg = request("mpart01")
    assert len(msg.body) == 553
    assert b"\x00" in msg.body
    assert msg.body.endswith(b"--7a9cbec02ceef655--\r\n")
    assert msg.content_type == "multipart/mixed"
    assert msg.content_type_params == {"boundary": "7a9cbec02ceef655"}
    assert msg.top_via.port == 5070
    assert msg.top_via.rport is True
    assert msg.routes[0].uri.port == 5080


def test_unreason() -> None:
    msg = response("unreason")
    assert msg.status_code == 200
    assert msg.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    assert msg.to_tag == "2229"
    assert len(msg.body) == 154


def test_noreason() -> None:
    msg = response("noreason")
    assert msg.status_code == 100
    assert msg.reason == ""
    assert msg.to_tag == "902jndnke3"


# =============================================================================================================
# RFC 4475 §3.1.2: invalid messages, and the §3.3 extras kept as fixtures. Expected outcome per fixture:
#   ("parse", status, partial?)  parse_message raises SipProtocolError with that status; partial? says
#                                whether .partial is a request a 400/505 can be built from (None for
#                                responses, which are dropped, RFC 4475 §3.1.2.5 / §3.1.2.19)
#   ("check", status)            parse_message accepts it (RFC 4475 lets a parser do so) and
#                                check_request, the endpoint's RFC 3261 §8.2 checks, rejects it
#   ("accept", reason)           accepted; the reason says why that is what RFC 4475 allows
# =============================================================================================================

INVALID: dict[str, tuple[str, tuple[object, ...]]] = {
    # 3.1.2.1 empty Via/Contact params and list elements: 400; partial answers the top Via minus empties
    "badinv01": ("3.1.2.1", ("parse", 400, True)),
    # 3.1.2.2 Content-Length larger than the datagram: 400 (on a stream the framer just waits)
    "clerr": ("3.1.2.2", ("parse", 400, True)),
    # 3.1.2.3 negative Content-Length: 400 (the stream framer raises too)
    "ncl": ("3.1.2.3", ("parse", 400, True)),
    # 3.1.2.4 CSeq > 2**32-1 (and Max-Forwards > 255): 400
    "scalar02": ("3.1.2.4", ("parse", 400, True)),
    # 3.1.2.5 response with overlarge CSeq: error, no partial (the response is dropped)
    "scalarlg": ("3.1.2.5", ("parse", 400, False)),
    # 3.1.2.6 unterminated quoted display name in To
    "quotbal": ("3.1.2.6", ("parse", 400, True)),
    # 3.1.2.7 Request-URI enclosed in <>
    "ltgtruri": ("3.1.2.7", ("parse", 400, True)),
    # 3.1.2.8 LWS inside the Request-URI
    "lwsruri": ("3.1.2.8", ("parse", 400, True)),
    # 3.1.2.9 several SP between Request-Line elements
    "lwsstart": ("3.1.2.9", ("parse", 400, True)),
    # 3.1.2.10 SP after SIP-Version
    "trws": ("3.1.2.10", ("parse", 400, True)),
    # 3.1.2.11 escaped headers in the Request-URI (RFC 3261 §19.1.1 table)
    "escruri": ("3.1.2.11", ("parse", 400, True)),
    # 3.1.2.12 non-GMT Date: mediagw never interprets Date, which RFC 4475 explicitly allows
    "baddate": ("3.1.2.12", ("accept", "Date is not used by mediagw; RFC 4475 allows ignoring it")),
    # 3.1.2.13 Contact URI with headers in addr-spec form (needs <>)
    "regbadct": ("3.1.2.13", ("parse", 400, True)),
    # 3.1.2.14 spaces inside <> in To
    "badaspec": ("3.1.2.14", ("parse", 400, True)),
    # 3.1.2.15 unquoted display names with a comma
    "baddn": ("3.1.2.15", ("parse", 400, True)),
    # 3.1.2.16 SIP/7.0: 505 Version Not Supported
    "badvers": ("3.1.2.16", ("parse", 505, True)),
    # 3.1.2.17 CSeq method differs from the Request-Line method: check_request -> 400
    "mismatch01": ("3.1.2.17", ("check", 400)),
    # 3.1.2.18 unknown method with CSeq mismatch: the endpoint's unknown-method rule answers 501 first;
    # check_request alone rejects it with 400
    "mismatch02": ("3.1.2.18", ("check", 400)),
    # 3.1.2.19 status code 4294967301: error, dropped
    "bigcode": ("3.1.2.19", ("parse", 400, False)),
    # 3.3.1 missing From/To/Call-ID/Max-Forwards: check_request -> 400
    "insuf": ("3.3.1", ("check", 400)),
    # 3.3.3 known but atypical Request-URI scheme: kept as absolute URI, check_request -> 416
    "novelsc": ("3.3.3", ("check", 416)),
    # 3.3.8 two CSeq/Call-ID/From/To/Max-Forwards: check_request -> 400
    "multi01": ("3.3.8", ("check", 400)),
    # 3.3.9 two different Content-Length values: framing is ambiguous -> 400
    "mcl01": ("3.3.9", ("parse", 400, True)),
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_rfc4475_invalid(name: str) -> None:
    _, expected = INVALID[name]
    data = load(name)
    kind = expected[0]
    if kind == "parse":
        _, status, has_partial = expected
        with pytest.raises(SipProtocolError) as info:
            parse_message(data)
        assert info.value.status_code == status
        assert str(info.value)  # informative message
        partial = info.value.partial  # type: ignore[attr-defined]
        if has_partial:
            assert isinstance(partial, SipRequest)
            reply = build_response(partial, status)
            wire = reply.serialize()
            # From/To/CSeq are copied verbatim, so the reply can carry the peer's own broken header
            assert wire.startswith(f"SIP/2.0 {status} ".encode())
            assert f"\r\nCall-ID: {partial.headers.get('Call-ID')}\r\n".encode() in wire
            assert reply.top_via.host == partial.top_via.host
        else:
            assert partial is None
    elif kind == "check":
        msg = parse_message(data)
        assert isinstance(msg, SipRequest)
        with pytest.raises(SipProtocolError) as info:
            check_request(msg)
        assert info.value.status_code == expected[1]
        assert info.value.partial is msg  # type: ignore[attr-defined]
    else:
        msg = parse_message(data)
        assert msg.serialize() == data


def test_rfc4475_fixture_set_is_complete() -> None:
    names = {p.stem for p in RFC4475.glob("*.dat")}
    assert names == set(VALID) | set(INVALID)
    sections = {section for section, _ in INVALID.values()}
    assert {f"3.1.2.{k}" for k in range(1, 20)} <= sections
    assert set(VALID.values()) == {f"3.1.1.{k}" for k in range(1, 14)}


def test_badvers_partial_answers_505() -> None:
    with pytest.raises(SipProtocolError) as info:
        parse_message(load("badvers"))
    partial = info.value.partial  # type: ignore[attr-defined]
    assert partial.uri.user == "t.watson"
    reply = build_response(partial, 505)
    assert reply.serialize().startswith(b"SIP/2.0 505 Version Not Supported\r\n")


def test_badinv01_partial_uses_lenient_top_via() -> None:
    with pytest.raises(SipProtocolError) as info:
        parse_message(load("badinv01"))
    partial = info.value.partial  # type: ignore[attr-defined]
    assert partial.top_via.host == "192.0.2.15"
    assert "Via" in str(info.value)


# =============================================================================================================
# Raw fixtures from common peers, field by field
# =============================================================================================================

def test_pjsua_invite() -> None:
    data = load("pjsua_invite")
    msg = request("pjsua_invite")
    assert msg.serialize() == data
    assert msg.method == "INVITE"
    assert str(msg.uri) == "sip:1001@192.168.1.10"
    via = msg.top_via
    assert (via.transport, via.host, via.port, via.rport) == ("UDP", "192.168.1.20", 5060, True)
    assert msg.branch == "z9hG4bKPj3a4b5c6d-7e8f-4a1b-9c2d-0e1f2a3b4c5d"
    assert msg.max_forwards == 70
    assert msg.from_.display_name == "Agent 7"
    assert msg.from_tag == "9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
    assert msg.to_tag is None
    assert msg.contacts[0].uri.params == {"ob": None}
    assert msg.contacts[0].uri.port == 5060
    assert msg.cseq == (12345, "INVITE")
    assert msg.routes[0].uri.lr
    assert "PRACK" in msg.headers.get_all("Allow")
    assert len(msg.headers.get_all("Allow")) == 12
    assert msg.headers.get_all("k") == ["replaces", "100rel", "timer", "norefersub"]
    assert msg.headers.get("x") == "1800"
    assert msg.content_type == "application/sdp"
    assert msg.content_length == len(msg.body)
    assert msg.body.startswith(b"v=0\r\n")
    check_request(msg)


def test_register_with_authorization() -> None:
    msg = request("register_auth")
    assert msg.serialize() == load("register_auth")
    assert msg.expires == 300
    [contact] = msg.contacts
    assert contact.params["reg-id"] == "1"
    assert contact.params["+sip.instance"] == '"<urn:uuid:00000000-0000-0000-0000-0000d9b3a1c2>"'
    auth = msg.headers.get_all("Authorization")
    assert len(auth) == 1  # never comma-split
    assert auth[0].startswith('Digest username="agent7", realm="pbx.example.com"')
    assert msg.to_tag is None
    check_request(msg)


def test_response_200() -> None:
    msg = response("response_200_invite")
    assert msg.serialize() == load("response_200_invite")
    assert (msg.status_code, msg.reason) == (200, "OK")
    via = msg.top_via
    assert via.rport == 5062
    assert via.received == "203.0.113.9"
    assert [r.uri.host for r in msg.record_routes] == ["192.168.1.10", "10.0.0.1"]
    assert msg.record_routes[0].uri.transport == "udp"
    assert msg.to_tag == "as58f4201b"
    assert msg.cseq == (12345, "INVITE")


def test_response_401_two_challenges() -> None:
    msg = response("response_401")
    challenges = msg.headers.get_all("WWW-Authenticate")
    assert len(challenges) == 2
    assert "algorithm=SHA-256" in challenges[0]
    assert msg.headers.get("www-authenticate") == challenges[0]


def test_response_180_ipv6() -> None:
    msg = response("response_180")
    assert msg.serialize() == load("response_180")
    via = msg.top_via
    assert (via.transport, via.host, via.port, via.received) == ("TCP", "2001:db8::20", 5060, "2001:db8::20")
    assert msg.from_.uri.host == "2001:db8::20"
    assert msg.to.uri.host == "2001:db8::10"
    assert msg.to.uri.port == 5060
    assert msg.contacts[0].uri.transport == "tcp"
    assert msg.call_id == "ringing-v6@2001:db8::20"


def test_compact_forms() -> None:
    msg = request("compact_forms")
    assert msg.serialize() == load("compact_forms")
    assert msg.uri.scheme == "sips"
    assert msg.uri.port == 5061
    assert msg.top_via.transport == "TLS"
    assert msg.from_.display_name == "Bob"
    assert msg.to.uri.scheme == "tel"
    assert msg.to.uri.user == "+1-201-555-0123"
    assert msg.call_id == "compact-1@client.example.com"
    assert msg.contacts[0].params == {"expires": "60"}
    assert msg.headers.get_all("Supported") == ["timer", "100rel"]
    assert msg.headers.get("Subject") == "compact form test"
    assert msg.headers.get("Event") == "presence"
    assert msg.headers.get("Session-Expires") == "90;refresher=uac"
    assert msg.content_type == "text/plain"
    assert msg.body == b"hello\r\n"
    for long_name, short in [("Via", "v"), ("From", "f"), ("To", "t"), ("Call-ID", "i"), ("Contact", "m"),
                             ("Content-Type", "c"), ("Content-Length", "l")]:
        assert msg.headers.get(long_name) == msg.headers.get(short) is not None
        assert long_name in msg.headers and short in msg.headers


def test_folded_headers() -> None:
    msg = request("folded")
    assert msg.serialize() == load("folded")
    assert msg.top_via.branch == "z9hG4bKfold1"
    assert msg.from_.display_name == "Folded Name"
    assert msg.from_tag == "ff1"
    assert msg.cseq == (1, "INVITE")
    assert msg.headers.get("Subject") == "first line  second line"
    assert [c.uri.host for c in msg.contacts] == ["192.0.2.7", "192.0.2.8"]
    assert msg.contacts[1].params == {"q": "0.5"}


# =============================================================================================================
# Datagram and stream body rules (RFC 3261 §18.3)
# =============================================================================================================

OPTIONS = (b"OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
           b"From: <sip:b@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n"
           b"Max-Forwards: 70\r\n")


def test_datagram_body_truncated_to_content_length() -> None:
    msg = parse_message(OPTIONS + b"Content-Length: 3\r\n\r\nabcdef")
    assert msg.body == b"abc"


def test_datagram_body_shorter_than_content_length_is_400() -> None:
    with pytest.raises(SipProtocolError) as info:
        parse_message(OPTIONS + b"Content-Length: 10\r\n\r\nabc")
    assert info.value.status_code == 400
    assert isinstance(info.value.partial, SipRequest)  # type: ignore[attr-defined]


def test_datagram_without_content_length_takes_the_rest() -> None:
    msg = parse_message(OPTIONS + b"\r\nrest of datagram")
    assert msg.body == b"rest of datagram"
    assert msg.content_length is None
    assert msg.serialize() == OPTIONS + b"\r\nrest of datagram"


def test_stream_message_rules() -> None:
    with pytest.raises(SipProtocolError, match="Content-Length"):
        parse_message(OPTIONS + b"\r\n", datagram=False)
    with pytest.raises(SipProtocolError):
        parse_message(OPTIONS + b"Content-Length: 1\r\n\r\nab", datagram=False)
    assert parse_message(OPTIONS + b"Content-Length: 2\r\n\r\nab", datagram=False).body == b"ab"


def test_too_large_is_513() -> None:
    data = OPTIONS + b"Content-Length: 2000\r\n\r\n" + b"x" * 2000
    with pytest.raises(SipMessageTooLarge) as info:
        parse_message(data, max_size=1000)
    assert info.value.status_code == 513
    assert isinstance(info.value.partial, SipRequest)  # type: ignore[attr-defined]


def test_leading_crlf_ignored() -> None:
    msg = parse_message(b"\r\n\r\n" + OPTIONS + b"Content-Length: 0\r\n\r\n")
    assert msg.serialize() == OPTIONS + b"Content-Length: 0\r\n\r\n"


@pytest.mark.parametrize("data,status", [
    (b"", 400),
    (b"\r\n\r\n", 400),
    (b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n", 400),  # no empty line
    (b"OPTIONS sip:a@b SIP/2.0\r\nno colon here\r\n\r\n", 400),
    (b"OPTIONS sip:a@b SIP/2.0\r\n folded first\r\n\r\n", 400),
    (b"OPTIONS sip:a@b SIP/2.0\r\nBad Name: x\r\n\r\n", 400),
    (b"OPTIONS sip:a@b SIP/2.0\r\nX: a\nb\r\n\r\n", 400),  # bare LF
    (b"OPTIONS sip:a@b HTTP/1.1\r\n\r\n", 400),
    (b"OPTIONS sip:a@b SIP/3.0\r\n\r\n", 505),
    (b"SIP/2.0 99 Too Low\r\n\r\n", 400),
    (b"SIP/2.0 700 Too High\r\n\r\n", 400),
    (b"SIP/3.0 200 OK\r\n\r\n", 505),
    (b"SIP/2.0 2x0 OK\r\n\r\n", 400),
    (b"OPT IONS sip:a@b SIP/2.0\r\n\r\n", 400),
    (b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: five\r\n\r\n", 400),
    (b"OPTIONS sip:a@b SIP/2.0\r\nMax-Forwards: 70a\r\n\r\n", 400),
    (b"OPTIONS sip:a@b SIP/2.0\r\nCSeq: 1\r\n\r\n", 400),
    (b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: a b\r\n\r\n", 400),
    (b"OPTIONS sip:a@b SIP/2.0\r\nContact: *, <sip:a@b>\r\n\r\n", 400),
    (b"OPTIONS sip:a@b SIP/2.0\r\nRoute: sip:a@b?x=y\r\n\r\n", 400),
])
def test_malformed_messages(data: bytes, status: int) -> None:
    with pytest.raises(SipProtocolError) as info:
        parse_message(data)
    assert info.value.status_code == status
    assert hasattr(info.value, "partial")


def test_status_line_without_reason_space_tolerated() -> None:
    msg = parse_message(b"SIP/2.0 180\r\nContent-Length: 0\r\n\r\n")
    assert isinstance(msg, SipResponse)
    assert (msg.status_code, msg.reason) == (180, "")


def test_wildcard_contact() -> None:
    msg = parse_message(OPTIONS.replace(b"OPTIONS", b"REGISTER") + b"Contact: *\r\nExpires: 0\r\n"
                        b"Content-Length: 0\r\n\r\n")
    assert msg.is_wildcard_contact
    assert msg.contacts == []
    assert msg.expires == 0


def test_expires_overflow_counts_as_3600() -> None:
    msg = parse_message(OPTIONS + b"Expires: 99999999999999\r\nContent-Length: 0\r\n\r\n")
    assert msg.expires == 3600


def test_missing_headers_raise_naming_the_header() -> None:
    msg = parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n")
    for attr, name in [("call_id", "Call-ID"), ("cseq", "CSeq"), ("from_", "From"), ("to", "To"),
                       ("top_via", "Via")]:
        with pytest.raises(SipProtocolError, match=name) as info:
            getattr(msg, attr)
        assert info.value.status_code == 400
    assert msg.max_forwards is None
    assert msg.content_type is None
    assert msg.expires is None
    assert msg.vias == []
    assert msg.contacts == []


# =============================================================================================================
# Headers, serialization after changes, building
# =============================================================================================================

def test_headers_multimap() -> None:
    h = Headers([("Via", "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b"), ("v", "SIP/2.0/UDP c"),
                 ("Contact", "<sip:a@b>"), ("Authorization", 'Digest a="1", b="2"')])
    assert h.get("VIA") == "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b"
    assert h.get_all("via") == ["SIP/2.0/UDP a;branch=z9hG4bK1", "SIP/2.0/UDP b", "SIP/2.0/UDP c"]
    assert h.get_all("authorization") == ['Digest a="1", b="2"']
    assert h.get("X-Missing") is None
    assert h.get_all("X-Missing") == []
    assert "m" in h and "contact" in h and "X-Missing" not in h
    assert list(h)[1] == ("v", "SIP/2.0/UDP c")
    h.add("Via", "SIP/2.0/UDP top", first=True)
    assert h.get("Via") == "SIP/2.0/UDP top"
    h.set("Contact", "<sip:new@b>")
    assert h.get_all("m") == ["<sip:new@b>"]
    h.remove("v")
    assert "Via" not in h
    h.add("X-New", "1", first=True)
    assert next(iter(h)) == ("X-New", "1")
    assert len(h) == 3


def test_remove_first_value() -> None:
    h = Headers([("Route", "<sip:p1;lr>, <sip:p2;lr>"), ("Route", "<sip:p3;lr>")])
    assert h.remove_first_value("Route") == "<sip:p1;lr>"
    assert h.get_all("Route") == ["<sip:p2;lr>", "<sip:p3;lr>"]
    assert h.remove_first_value("Route") == "<sip:p2;lr>"
    assert h.remove_first_value("Route") == "<sip:p3;lr>"
    assert h.remove_first_value("Route") is None


def test_modified_header_is_rerendered_others_stay_raw() -> None:
    data = load("wsinv")
    msg = request("wsinv")
    msg.headers.set("Max-Forwards", "67")
    out = msg.serialize()
    assert b"Max-Forwards: 67\r\n" in out
    assert b"MaX-fOrWaRdS" not in out
    assert b"TO :\r\n sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n\r\n" in out
    assert msg.max_forwards == 67  # cache dropped on change
    assert len(out) == len(data) - len(b"MaX-fOrWaRdS: 0068") + len(b"Max-Forwards: 67")


def test_changing_start_line_rerenders_it() -> None:
    msg = request("esc01")
    assert msg.serialize().startswith(b"INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0\r\n")
    msg.uri = parse_uri("sip:agent@10.0.0.5:5080")
    assert msg.serialize().startswith(b"INVITE sip:agent@10.0.0.5:5080 SIP/2.0\r\n")
    resp = response("unreason")
    resp.reason = "OK"
    assert resp.serialize().startswith(b"SIP/2.0 200 OK\r\n")


def test_set_body_updates_length() -> None:
    msg = request("pjsua_invite")
    msg.set_body(b"v=0\r\n", "application/sdp")
    again = parse_message(msg.serialize(), datagram=False)
    assert again.body == b"v=0\r\n"
    assert again.content_length == 5
    msg.set_body(b"")
    assert "Content-Type" not in msg.headers
    assert msg.content_length == 0


def test_new_request_round_trip() -> None:
    req = SipRequest.new(
        "INVITE", "sip:agent7@192.168.1.20:5060",
        via=Via(transport="UDP", host="10.0.0.1", port=5060, params={"branch": "z9hG4bKgw1", "rport": None}),
        from_=NameAddr(uri=parse_uri("sip:queue@gw.example.com"), display_name="Sales Queue",
                       params={"tag": "gw-1"}),
        to="<sip:agent7@pbx.example.com>", call_id="gw-call-1", cseq=1,
        contact="<sip:gw@10.0.0.1:5060>", headers=[("Supported", "timer")], body=b"v=0\r\n",
        content_type="application/sdp")
    data = req.serialize()
    assert data.startswith(b"INVITE sip:agent7@192.168.1.20:5060 SIP/2.0\r\n"
                           b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKgw1;rport\r\nMax-Forwards: 70\r\n")
    parsed = parse_message(data, datagram=False)
    assert isinstance(parsed, SipRequest)
    assert parsed.cseq == (1, "INVITE")
    assert parsed.from_.display_name == "Sales Queue"
    assert parsed.from_tag == "gw-1"
    assert parsed.to.uri.user == "agent7"
    assert parsed.contacts[0].uri.port == 5060
    assert parsed.content_length == 5
    assert parsed.content_type == "application/sdp"
    assert parsed.serialize() == data
    check_request(parsed)


def test_build_response_per_8_2_6_2() -> None:
    req = request("wsinv")
    resp = build_response(req, 180, to_tag="uas-1")
    assert resp.reason == "Ringing"
    assert resp.headers.get_lines("Via") == req.headers.get_lines("Via")
    assert [v.branch for v in resp.vias] == [v.branch for v in req.vias]
    assert resp.from_ == req.from_
    assert resp.to_tag == "1918181833n"  # the To already had a tag: kept, not doubled
    assert resp.call_id == req.call_id
    assert resp.cseq == req.cseq
    assert resp.content_length == 0
    again = parse_message(resp.serialize())
    assert isinstance(again, SipResponse)
    assert again.status_code == 180

    invite = request("pjsua_invite")
    ok = build_response(invite, 200, to_tag="uas-2", headers=[("Contact", "<sip:gw@10.0.0.1>")],
                        body=b"v=0\r\n", content_type="application/sdp")
    assert ok.to_tag == "uas-2"
    assert ok.to.uri == invite.to.uri
    assert ok.contacts[0].uri.host == "10.0.0.1"
    assert ok.content_type == "application/sdp"
    assert parse_message(ok.serialize(), datagram=False).body == b"v=0\r\n"
    assert build_response(invite, 299).reason == "Unknown"
    assert build_response(invite, 486, "Agent Busy").reason == "Agent Busy"


def test_build_100_copies_timestamp() -> None:
    req = parse_message(OPTIONS + b"Timestamp: 54.2\r\nContent-Length: 0\r\n\r\n")
    assert isinstance(req, SipRequest)
    assert build_response(req, 100).headers.get("Timestamp") == "54.2"
    assert build_response(req, 200).headers.get("Timestamp") is None


def test_parse_benchmark(benchmark) -> None:  # type: ignore[no-untyped-def]
    """Parse + serialize of a pjsua INVITE (a benchmark; timings are never asserted)."""
    data = load("pjsua_invite")
    assert benchmark(lambda: parse_message(data).serialize()) == data
