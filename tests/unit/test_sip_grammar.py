"""RFC 3261 §19/§25 grammar: URIs (sip, sips, tel, absolute), name-addr, Via, parameters, comma lists."""
from __future__ import annotations

import pytest

from mediagw.errors import SipProtocolError
from mediagw.sip.grammar import (
    NameAddr,
    SipUri,
    Via,
    parse_name_addr,
    parse_params,
    parse_uri,
    parse_via,
    quote,
    split_commas,
    unquote,
)

# -- SIP / SIPS URIs (RFC 3261 §19.1) ---------------------------------------------------------------------

def test_full_sip_uri() -> None:
    uri = parse_uri("sip:alice:secret@atlanta.com:5061;transport=tcp;lr;maddr=239.255.255.1?subject=project"
                    "&priority=urgent")
    assert uri.scheme == "sip"
    assert uri.user == "alice"
    assert uri.password == "secret"
    assert uri.host == "atlanta.com"
    assert uri.port == 5061
    assert uri.params == {"transport": "tcp", "lr": None, "maddr": "239.255.255.1"}
    assert uri.headers == {"subject": "project", "priority": "urgent"}
    assert uri.transport == "tcp"
    assert uri.lr
    assert str(uri) == ("sip:alice:secret@atlanta.com:5061;transport=tcp;lr;maddr=239.255.255.1"
                        "?subject=project&priority=urgent")


def test_sips_and_case_insensitive_scheme() -> None:
    uri = parse_uri("SIPS:bob@biloxi.example.com")
    assert uri.scheme == "sips"
    assert uri.is_sip
    assert uri.port is None
    assert str(uri) == "sips:bob@biloxi.example.com"


def test_uri_without_user() -> None:
    uri = parse_uri("sip:127.0.0.1:5080")
    assert uri.user == ""
    assert uri.host == "127.0.0.1"
    assert uri.port == 5080
    assert str(uri) == "sip:127.0.0.1:5080"


def test_percent_escapes_are_decoded_once() -> None:
    # RFC 4475 §3.1.1.3: "name" has value "value%41", not "valueA"
    uri = parse_uri("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31")
    assert uri.user == "caller"
    assert uri.params == {"lr": None, "name": "value%41"}
    assert parse_uri(str(uri)) == uri


def test_user_with_escaped_at_and_semicolons() -> None:
    uri = parse_uri("sip:user;par=u%40example.net@example.com")
    assert uri.user == "user;par=u@example.net"
    assert uri.host == "example.com"
    assert uri.params == {}
    assert parse_uri(str(uri)) == uri


def test_escaped_null_in_user_is_kept() -> None:
    assert parse_uri("sip:null-%00-null@example.com").user == "null-\x00-null"


def test_user_reescaped_on_output() -> None:
    uri = SipUri(scheme="sip", user="I have spaces", host="example.net")
    assert str(uri) == "sip:I%20have%20spaces@example.net"


@pytest.mark.parametrize("text,host,port", [
    ("sip:[2001:db8::10]", "2001:db8::10", None),
    ("sip:[2001:db8::10]:5070", "2001:db8::10", 5070),
    ("sip:[2001:db8::10:5070]", "2001:db8::10:5070", None),  # RFC 5118 §4.6: no port, odd host
    ("sip:user@[::ffff:192.0.2.1]:5060;transport=udp", "::ffff:192.0.2.1", 5060),
])
def test_ipv6_references(text: str, host: str, port: int | None) -> None:
    uri = parse_uri(text)
    assert (uri.host, uri.port) == (host, port)
    assert str(uri) == text


@pytest.mark.parametrize("bad", [
    "sip:2001:db8::10",  # RFC 5118 §4.5: IPv6 without brackets
    "sip:user@example.com; lr",  # RFC 4475 §3.1.2.8: LWS inside
    "<sip:user@example.com>",
    "sip:user@example.com:99999",
    "sip:user@example.com:5o60",
    "sip:user@",
    "sip:@example.com",
    "sip:user@exa mple.com",
    "sip:us%zzer@example.com",
    "sip:us%2@example.com",
    "sip:user@example.com;;lr",
    "sip:user@example.com;=x",
    "sip:user@example.com;a=",
    "sip:user@example.com?nohvalue",
    "sip:a@b@example.com",
    "sip:user@[2001:db8::1",
    "sip:user@[notipv6]",
    "sip:",
    ":nothing",
    "nocolon",
    "1sip:x",
    "sip:us\"er@example.com",
])
def test_invalid_uris(bad: str) -> None:
    with pytest.raises(SipProtocolError):
        parse_uri(bad)


def test_unusual_but_legal_user_and_password() -> None:
    # RFC 4475 §3.1.1.2
    uri = parse_uri("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too."
                    "(doesn't-it)@example.com")
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert uri.host == "example.com"


# -- TEL and other absolute URIs ------------------------------------------------------------------------------

def test_tel_uri_global_number() -> None:
    uri = parse_uri("tel:+1-201-555-0123;ext=1234;phone-context=example.com")
    assert uri.scheme == "tel"
    assert uri.user == "+1-201-555-0123"
    assert uri.host == ""
    assert uri.params == {"ext": "1234", "phone-context": "example.com"}
    assert str(uri) == "tel:+1-201-555-0123;ext=1234;phone-context=example.com"


def test_tel_uri_local_number() -> None:
    uri = parse_uri("tel:7042;phone-context=example.com")
    assert uri.user == "7042"


@pytest.mark.parametrize("bad", ["tel:", "tel:+", "tel:12 34", "tel:+1-201;=x", "tel:abc!"])
def test_invalid_tel_uris(bad: str) -> None:
    with pytest.raises(SipProtocolError):
        parse_uri(bad)


@pytest.mark.parametrize("text,scheme", [
    ("soap.beep://192.0.2.103:3002", "soap.beep"),  # RFC 4475 §3.3.3
    ("nobodyknowsthisscheme:totallyopaquecontent", "nobodyknowsthisscheme"),  # RFC 4475 §3.3.2
    ("mailto:jj@example.org", "mailto"),
    ("urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6", "urn"),
])
def test_unknown_schemes_kept_as_absolute_uri(text: str, scheme: str) -> None:
    uri = parse_uri(text)
    assert uri.scheme == scheme
    assert not uri.is_sip
    assert str(uri) == text


# -- name-addr / addr-spec (RFC 3261 §20.10) -------------------------------------------------------------------

def test_name_addr_quoted_display_with_escapes() -> None:
    na = parse_name_addr('"J Rosenberg \\\\\\""       <sip:jdrosen@example.com>  ;  tag = 98asjd8')
    assert na.display_name == 'J Rosenberg \\"'
    assert na.uri.user == "jdrosen"
    assert na.tag == "98asjd8"
    assert parse_name_addr(str(na)) == na


def test_name_addr_token_display_without_space() -> None:
    na = parse_name_addr("caller<sip:caller@example.com>;tag=323")  # RFC 4475 §3.1.1.6
    assert na.display_name == "caller"
    assert na.tag == "323"


def test_name_addr_multi_token_display() -> None:
    na = parse_name_addr("token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;tag=x")
    assert na.display_name == "token1~` token2'+_ token3*%!.-"


def test_addr_spec_params_belong_to_header() -> None:
    na = parse_name_addr("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n")
    assert na.display_name is None
    assert na.uri.params == {}
    assert na.params == {"tag": "1918181833n"}


def test_name_addr_uri_params_stay_in_uri() -> None:
    na = parse_name_addr("<sip:agent7@192.168.1.20:5060;ob>;expires=60;+sip.instance=\"<urn:uuid:1>\"")
    assert na.uri.params == {"ob": None}
    assert na.params == {"expires": "60", "+sip.instance": '"<urn:uuid:1>"'}
    assert str(na) == '<sip:agent7@192.168.1.20:5060;ob>;expires=60;+sip.instance="<urn:uuid:1>"'


def test_name_addr_str_quotes_display() -> None:
    na = NameAddr(uri=parse_uri("sip:a@b.example"), display_name='Agent "7"', params={"tag": "t1"})
    assert str(na) == '"Agent \\"7\\"" <sip:a@b.example>;tag=t1'
    assert parse_name_addr(str(na)) == na


def test_name_addr_tel_uri() -> None:
    na = parse_name_addr("<tel:+1-201-555-0123;phone-context=example.com>;tag=1")
    assert na.uri.scheme == "tel"
    assert na.tag == "1"


@pytest.mark.parametrize("bad", [
    '"Mr. J. User <sip:j.user@example.com>',  # RFC 4475 §3.1.2.6 unterminated quote
    '"Watson, Thomas" < sip:t.watson@example.org >',  # §3.1.2.14 spaces in addr-spec
    "Watson, Thomas <sip:t.watson@example.org>",  # §3.1.2.15 non-token display name
    "sip:user@example.com?Route=%3Csip:sip.example.com%3E",  # §3.1.2.13 needs <>
    '"Joe" <sip:joe@example.org>;;;;',  # §3.1.2.1 empty parameters
    "<sip:joe@example.org",
    '"x" sip:joe@example.org',
    "",
    "<>",
    "<sip:a@b>;tag=",
    "<sip:a@b>;tag=\"open",
    "<sip:a@b> junk",
])
def test_invalid_name_addrs(bad: str) -> None:
    with pytest.raises(SipProtocolError):
        parse_name_addr(bad)


# -- Via (RFC 3261 §20.42) --------------------------------------------------------------------------------------

def test_via_with_lws_everywhere() -> None:
    via = parse_via("SIP  / 2.0  / TCP     spindle.example.com   ;  branch  =   z9hG4bK9ikj8  ")
    assert via.protocol == "SIP/2.0"
    assert via.transport == "TCP"
    assert via.host == "spindle.example.com"
    assert via.port is None
    assert via.branch == "z9hG4bK9ikj8"
    assert str(via) == "SIP/2.0/TCP spindle.example.com;branch=z9hG4bK9ikj8"


def test_via_rport_received() -> None:
    via = parse_via("SIP/2.0/UDP 192.168.1.20:5060;rport;branch=z9hG4bKPj1")
    assert via.rport is True
    assert via.port == 5060
    via = parse_via("SIP/2.0/UDP 192.168.1.20:5060;rport=5062;received=203.0.113.9;branch=z9hG4bKPj1")
    assert via.rport == 5062
    assert via.received == "203.0.113.9"
    assert parse_via("SIP/2.0/UDP h;branch=z9hG4bK1").rport is None


def test_via_ipv6_sent_by_and_received() -> None:
    # RFC 5118 §4.5: received with or without brackets
    via = parse_via("SIP/2.0/UDP [2001:db8::9:1]:5060;received=[2001:db8::9:255];branch=z9hG4bKas3")
    assert via.host == "2001:db8::9:1"
    assert via.port == 5060
    assert via.received == "2001:db8::9:255"
    assert via.sent_by == "[2001:db8::9:1]:5060"
    assert parse_via("SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255").received == "2001:db8::9:255"


def test_via_unknown_transport_and_case() -> None:
    via = parse_via("sip/2.0/unknown t4.example.com;branch=z9hG4bKasd0f3en")
    assert via.transport == "UNKNOWN"
    assert via.protocol == "SIP/2.0"


def test_via_port_with_spaces_around_colon() -> None:
    via = parse_via("SIP/2.0/UDP host.example.com : 5070;branch=z9hG4bK1")
    assert via.port == 5070


def test_via_constructed() -> None:
    via = Via(transport="TCP", host="2001:db8::1", port=5060, params={"branch": "z9hG4bKx", "rport": None})
    assert str(via) == "SIP/2.0/TCP [2001:db8::1]:5060;branch=z9hG4bKx;rport"
    assert parse_via(str(via)) == via


@pytest.mark.parametrize("bad", [
    "SIP/2.0/UDP 192.0.2.15;;",  # RFC 4475 §3.1.2.1
    "SIP/2.0/UDP",
    "SIP/2.0 UDP host",
    "SIP/2.0/UDPhost",
    "SIP//UDP host",
    "SIP/2.0/UDP host:",
    "SIP/2.0/UDP host:70000",
    "SIP/2.0/UDP [2001:db8::1",
    "",
    "SIP/2.0/UDP ho st",
])
def test_invalid_vias(bad: str) -> None:
    with pytest.raises(SipProtocolError):
        parse_via(bad)


def test_via_bad_rport_raises() -> None:
    with pytest.raises(SipProtocolError):
        parse_via("SIP/2.0/UDP h;rport=abc").rport  # noqa: B018


# -- helpers ----------------------------------------------------------------------------------------------------

def test_split_commas_respects_quotes_and_brackets() -> None:
    value = ('application/sdp;level=1, application/x-private;description="comma, and, space, delimited",'
             ' <sip:a@b;x=1,2>, "a\\"," <sip:c@d>')
    assert split_commas(value) == [
        "application/sdp;level=1",
        'application/x-private;description="comma, and, space, delimited"',
        "<sip:a@b;x=1,2>",
        '"a\\"," <sip:c@d>',
    ]
    assert split_commas("a,,b") == ["a", "", "b"]
    assert split_commas("single") == ["single"]


def test_parse_params() -> None:
    assert parse_params(' ; newparam =      newvalue ;  secondparam ; q = 0.33') == {
        "newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert parse_params(";Tag=AbC") == {"tag": "AbC"}
    assert parse_params("") == {}
    with pytest.raises(SipProtocolError):
        parse_params("tag=1")


def test_quote_unquote() -> None:
    assert quote('a"b\\c') == '"a\\"b\\\\c"'
    assert unquote(quote('a"b\\c')) == 'a"b\\c'
    assert unquote("token") == "token"
    with pytest.raises(SipProtocolError):
        unquote('"a" b"')
