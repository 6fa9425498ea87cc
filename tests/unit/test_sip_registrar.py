"""Registrar (mediagw.sip.registrar): RFC 3261 §10.3 driven with raw REGISTER bytes and an explicit clock."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

import pytest

from mediagw.errors import LocalError
from mediagw.sip.auth import AuthThrottle, DigestAuthenticator, parse_auth_header, parse_challenge
from mediagw.sip.grammar import parse_name_addr
from mediagw.sip.message import SipRequest, SipResponse, parse_message
from mediagw.sip.registrar import (
    Binding,
    BindingAdded,
    BindingExpired,
    BindingRemoved,
    Registrar,
    RegistrarEvent,
)

DOMAIN = "mediagw.test"
USERS = {"alice": "Alice-pw-1", "bob": "Bob-pw-2"}
T0 = 5000.0
WALL = 1_700_000_000.0
WALL_DATE = "Tue, 14 Nov 2023 22:13:20 GMT"
ALICE_NAT = ("203.0.113.50", 40123)  # where the REGISTERs come from; the Contact says 192.168.1.20


def make_registrar(
    *, throttle: AuthThrottle | None = None, algorithms: Sequence[str] = ("SHA-256", "MD5"), **kwargs: int
) -> Registrar:
    auth = DigestAuthenticator(DOMAIN, USERS.get, algorithms=algorithms, nonce_ttl=300.0, secret=b"k" * 32)
    if throttle is None:
        throttle = AuthThrottle(max_failures=5, window=60.0, block_for=120.0)
    return Registrar(auth, throttle, min_expires=60, max_expires=3600, wall_clock=lambda: WALL, **kwargs)


def register_bytes(
    *,
    user: str = "alice",
    to_user: str | None = None,
    call_id: str = "reg-1@192.168.1.20",
    cseq: int = 1,
    contacts: Sequence[str] = ("<sip:alice@192.168.1.20:5062;transport=udp>",),
    expires: int | str | None = None,
    authorization: str | None = None,
) -> bytes:
    to_user = user if to_user is None else to_user
    lines = [
        f"REGISTER sip:{DOMAIN} SIP/2.0",
        f"Via: SIP/2.0/UDP 192.168.1.20:5062;branch=z9hG4bK-{call_id.split('@')[0]}-{cseq};rport",
        "Max-Forwards: 70",
        f'From: "Agent {user}" <sip:{user}@{DOMAIN}>;tag=ua-{user}',
        f"To: <sip:{to_user}@{DOMAIN}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        "User-Agent: unit-test-phone/1.0",
    ]
    lines += [f"Contact: {c}" for c in contacts]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    lines += ["Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


def parse_request(data: bytes) -> SipRequest:
    message = parse_message(data)
    assert isinstance(message, SipRequest)
    return message


def reparsed(response: SipResponse) -> SipResponse:
    """The response as a peer would read it off the wire."""
    message = parse_message(response.serialize())
    assert isinstance(message, SipResponse)
    return message


def independent_digest(hash_name: str, user: str, password: str, nonce: str, nc: str, cnonce: str) -> str:
    def h(text: str) -> str:
        return hashlib.new(hash_name, text.encode()).hexdigest()

    ha1 = h(f"{user}:{DOMAIN}:{password}")
    ha2 = h(f"REGISTER:sip:{DOMAIN}")
    return h(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")


class Phone:
    """A registering UA written straight from RFC 7616: its own digest code, nonce reuse with nc + 1."""

    def __init__(
        self,
        registrar: Registrar,
        user: str = "alice",
        *,
        source: tuple[str, int] = ALICE_NAT,
        password: str | None = None,
        algorithm: str = "SHA-256",
        call_id: str | None = None,
        transport: str = "udp",
    ) -> None:
        self.registrar = registrar
        self.user = user
        self.password = USERS.get(user, "") if password is None else password
        self.algorithm = algorithm
        self.source = source
        self.transport = transport
        self.call_id = call_id or f"reg-{user}@192.168.1.20"
        self.cseq = 0
        self.challenge: dict[str, str] | None = None
        self.nc = 0

    def authorization(self) -> str | None:
        if self.challenge is None:
            return None
        self.nc += 1
        nc = f"{self.nc:08x}"
        hash_name = {"SHA-256": "sha256", "MD5": "md5"}[self.algorithm]
        ch = self.challenge
        response = independent_digest(hash_name, self.user, self.password, ch["nonce"], nc, "c0ffee")
        return (
            f'Digest username="{self.user}", realm="{ch["realm"]}", nonce="{ch["nonce"]}", '
            f'uri="sip:{DOMAIN}", response="{response}", algorithm={self.algorithm}, cnonce="c0ffee", '
            f'qop=auth, nc={nc}, opaque="{ch["opaque"]}"'
        )

    def send(self, now: float, **kwargs: object) -> SipResponse:
        """One REGISTER transaction (no retry)."""
        self.cseq += 1
        data = register_bytes(
            user=self.user,
            call_id=self.call_id,
            cseq=self.cseq,
            authorization=self.authorization(),
            **kwargs,  # type: ignore[arg-type]
        )
        response = self.registrar.handle_register(parse_request(data), self.source, self.transport, now)
        return reparsed(response)

    def register(self, now: float, **kwargs: object) -> SipResponse:
        """REGISTER, answering one 401 the way phones do."""
        response = self.send(now, **kwargs)
        if response.status_code == 401:
            self.take_challenge(response)
            response = self.send(now, **kwargs)
        return response

    def take_challenge(self, response: SipResponse) -> None:
        values = [parse_challenge(v) for v in response.headers.get_all("WWW-Authenticate")]
        self.challenge = next(v for v in values if v["algorithm"] == self.algorithm)
        self.nc = 0


def contacts_of(response: SipResponse) -> dict[str, int]:
    """URI -> expires of every Contact in a 200."""
    out = {}
    for value in response.headers.get_all("Contact"):
        address = parse_name_addr(value)
        expires = address.params["expires"]
        assert expires is not None
        out[str(address.uri)] = int(expires)
    return out


def drain(registrar: Registrar) -> list[RegistrarEvent]:
    events = []
    while (event := registrar.next_event()) is not None:
        events.append(event)
    return events


# -- authentication ----------------------------------------------------------------------------------------


def test_unauthenticated_register_is_challenged_sha256_first() -> None:
    registrar = make_registrar()
    phone = Phone(registrar)
    response = phone.send(T0)
    assert (response.status_code, response.reason) == (401, "Unauthorized")
    challenges = [parse_challenge(v) for v in response.headers.get_all("WWW-Authenticate")]
    assert [c["algorithm"] for c in challenges] == ["SHA-256", "MD5"]
    assert all(c["realm"] == DOMAIN and c["qop"] == "auth" and "stale" not in c for c in challenges)
    assert response.to_tag  # RFC 3261 §8.2.6.2: every final response tags the To
    assert response.call_id == phone.call_id and response.cseq == (1, "REGISTER")
    assert registrar.bindings("alice", T0) == []
    assert registrar.throttle is not None and registrar.throttle.failures(ALICE_NAT, T0) == 0


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_register_success(algorithm: str) -> None:
    registrar = make_registrar()
    phone = Phone(registrar, algorithm=algorithm)
    response = phone.register(T0, expires=1800)
    assert (response.status_code, response.reason) == (200, "OK")
    assert response.to_tag
    assert response.headers.get("Date") == WALL_DATE
    assert contacts_of(response) == {"sip:alice@192.168.1.20:5062;transport=udp": 1800}
    [binding] = registrar.bindings("alice", T0)
    assert binding == Binding(
        user="alice",
        contact=parse_name_addr("<sip:alice@192.168.1.20:5062;transport=udp>"),
        expires_at=T0 + 1800,
        source=ALICE_NAT,
        transport="udp",
        call_id=phone.call_id,
        cseq=2,
        q=None,
    )
    assert registrar.is_registered_source(ALICE_NAT, T0 + 1) == "alice"
    assert (
        registrar.is_registered_source(("192.168.1.20", 5062), T0 + 1) is None
    )  # the Contact is not the source
    assert registrar.is_registered_source(ALICE_NAT, T0 + 1800) is None
    assert drain(registrar) == [BindingAdded("alice", binding.contact)]
    assert registrar.get_timer() == T0 + 1800


def test_client_helper_builds_what_the_registrar_accepts() -> None:
    from mediagw.sip.auth import build_authorization

    registrar = make_registrar()
    first = registrar.handle_register(parse_request(register_bytes(cseq=1)), ALICE_NAT, "udp", T0)
    challenge = parse_challenge(first.headers.get_all("WWW-Authenticate")[0])
    value = build_authorization(
        challenge,
        method="REGISTER",
        uri=f"sip:{DOMAIN}",
        username="alice",
        password=USERS["alice"],
        cnonce="abc",
    )
    params = parse_auth_header(value)[1]
    assert params["response"] == independent_digest(
        "sha256", "alice", USERS["alice"], challenge["nonce"], "00000001", "abc"
    )
    response = registrar.handle_register(
        parse_request(register_bytes(cseq=2, authorization=value)), ALICE_NAT, "udp", T0
    )
    assert response.status_code == 200


def test_wrong_password_is_throttled(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="mediagw")
    registrar = make_registrar()
    attacker = Phone(registrar, password="letmein", source=("198.51.100.9", 5060))
    attacker.take_challenge(attacker.send(T0))
    for i in range(5):
        response = attacker.send(T0 + i)
        assert response.status_code == 401, i
        assert "stale" not in parse_challenge(response.headers.get_all("WWW-Authenticate")[0])
        attacker.take_challenge(response)
    # blocked: even the right password from that address gets 403, without a challenge
    attacker.password = USERS["alice"]
    for t in (T0 + 5, T0 + 100):
        response = attacker.send(t)
        assert (response.status_code, response.reason) == (403, "Forbidden")
        assert "WWW-Authenticate" not in response.headers
    assert registrar.bindings("alice", T0 + 100) == []
    # the same user from another address is not affected
    assert Phone(registrar, source=("203.0.113.77", 5060)).register(T0 + 6).status_code == 200
    # the block lapses (block_for=120 from the fifth failure at T0 + 4)
    attacker.take_challenge(
        registrar.handle_register(
            parse_request(register_bytes(call_id="probe", cseq=1)), attacker.source, "udp", T0 + 124.5
        )
    )
    assert attacker.send(T0 + 124.5).status_code == 200
    blocks = [r for r in caplog.records if r.levelno == logging.WARNING and "blocking" in r.getMessage()]
    assert len(blocks) == 1 and "198.51.100.9" in blocks[0].getMessage()
    # neither passwords nor digests reach the log
    text = "\n".join(r.getMessage() for r in caplog.records)
    for secret in ("letmein", USERS["alice"], "response="):
        assert secret not in text


def test_stale_nonce_gets_stale_challenge_then_success() -> None:
    registrar = make_registrar()
    phone = Phone(registrar)
    assert phone.register(T0, expires=600).status_code == 200
    response = phone.send(T0 + 301, expires=600)  # reuses the nonce from T0, now past nonce_ttl
    assert response.status_code == 401
    challenges = [parse_challenge(v) for v in response.headers.get_all("WWW-Authenticate")]
    assert all(c["stale"] == "true" for c in challenges)
    phone.take_challenge(response)
    assert phone.send(T0 + 301, expires=600).status_code == 200
    assert registrar.throttle is not None and registrar.throttle.failures(ALICE_NAT, T0 + 301) == 0


def test_replayed_authorization_is_rejected() -> None:
    registrar = make_registrar()
    phone = Phone(registrar)
    assert phone.register(T0).status_code == 200
    captured = phone.authorization()  # nc=2, used once below
    ok = registrar.handle_register(
        parse_request(register_bytes(cseq=10, authorization=captured)), ALICE_NAT, "udp", T0 + 1
    )
    assert ok.status_code == 200
    replay = registrar.handle_register(
        parse_request(
            register_bytes(cseq=11, contacts=("<sip:evil@198.51.100.66>",), authorization=captured)
        ),
        ("198.51.100.66", 5060),
        "udp",
        T0 + 2,
    )
    assert replay.status_code == 401
    assert [b.contact.uri.user for b in registrar.bindings("alice", T0 + 2)] == ["alice"]


def test_authenticated_user_must_own_the_aor() -> None:
    registrar = make_registrar()
    bob = Phone(registrar, user="bob")
    bob.take_challenge(bob.send(T0))
    response = bob.send(T0, contacts=("<sip:bob@192.168.1.30>",))
    assert response.status_code == 200
    bob.cseq += 1
    data = register_bytes(
        user="bob",
        to_user="alice",
        call_id=bob.call_id,
        cseq=bob.cseq,
        contacts=("<sip:bob@192.168.1.30>",),
        authorization=bob.authorization(),
    )
    response = registrar.handle_register(parse_request(data), ("192.168.1.30", 5060), "udp", T0 + 1)
    assert (response.status_code, response.reason) == (403, "Forbidden")
    assert registrar.bindings("alice", T0 + 1) == []


def test_uri_mismatch_and_malformed_credentials_are_400() -> None:
    registrar = make_registrar()
    phone = Phone(registrar)
    phone.take_challenge(phone.send(T0))
    value = phone.authorization()
    assert value is not None
    bad_uri = value.replace(f'uri="sip:{DOMAIN}"', 'uri="sip:elsewhere.test"')
    data = register_bytes(cseq=5, authorization=bad_uri)
    assert registrar.handle_register(parse_request(data), ALICE_NAT, "udp", T0).status_code == 400
    data = register_bytes(cseq=6, authorization='Digest username="alice", realm="mediagw.test", nonce=')
    assert registrar.handle_register(parse_request(data), ALICE_NAT, "udp", T0).status_code == 400


def test_non_register_is_a_bug() -> None:
    registrar = make_registrar()
    data = register_bytes().replace(b"REGISTER", b"OPTIONS")
    with pytest.raises(LocalError):
        registrar.handle_register(parse_request(data), ALICE_NAT, "udp", T0)


# -- expiration values (§10.3 step 6) -------------------------------------------------------------------


def test_interval_too_brief() -> None:
    registrar = make_registrar()
    phone = Phone(registrar)
    response = phone.register(T0, expires=30)
    assert (response.status_code, response.reason) == (423, "Interval Too Brief")
    assert response.headers.get("Min-Expires") == "60"
    # the contact parameter counts, even when the header is fine; the whole request fails
    response = phone.send(
        T0, expires=3600, contacts=("<sip:alice@192.168.1.20:5062>;expires=59", "<sip:alice@192.168.1.21>")
    )
    assert response.status_code == 423
    assert registrar.bindings("alice", T0) == []
    assert phone.send(T0, expires=60).status_code == 200


def test_expires_precedence_default_and_clamp() -> None:
    registrar = make_registrar()
    phone = Phone(registrar)
    response = phone.register(
        T0,
        expires=120,
        contacts=(
            "<sip:alice@10.1.1.1>;expires=300",  # parameter beats header
            "<sip:alice@10.1.1.2>",  # header
            "<sip:alice@10.1.1.3>;expires=86400",  # shortened to max_expires
        ),
    )
    assert response.status_code == 200
    assert contacts_of(response) == {
        "sip:alice@10.1.1.1": 300,
        "sip:alice@10.1.1.2": 120,
        "sip:alice@10.1.1.3": 3600,
    }
    response = phone.send(T0 + 1, contacts=("<sip:alice@10.1.1.4>",))  # neither: default_expires
    assert contacts_of(response)["sip:alice@10.1.1.4"] == 3600
    response = phone.send(T0 + 2, expires="bogus", contacts=("<sip:alice@10.1.1.5>",))  # §20.19: 3600
    assert contacts_of(response)["sip:alice@10.1.1.5"] == 3600


# -- bindings ------------------------------------------------------------------------------------------


def test_multiple_contacts_and_query() -> None:
    registrar = make_registrar()
    desk = Phone(registrar, call_id="desk@192.168.1.20")
    response = desk.register(
        T0,
        expires=600,
        contacts=('<sip:alice@192.168.1.20:5062>;q=0.5, "Soft" <sip:alice@192.168.1.20:5064>;q=0.9',),
    )
    assert response.status_code == 200
    assert contacts_of(response) == {"sip:alice@192.168.1.20:5062": 600, "sip:alice@192.168.1.20:5064": 600}
    mobile = Phone(registrar, call_id="mobile@10.9.9.9", source=("198.51.100.20", 33333), transport="tcp")
    response = mobile.register(T0 + 100, expires=300, contacts=("<sip:alice@10.9.9.9:5060;transport=tcp>",))
    assert response.status_code == 200
    assert contacts_of(response) == {
        "sip:alice@192.168.1.20:5062": 500,
        "sip:alice@192.168.1.20:5064": 500,
        "sip:alice@10.9.9.9:5060;transport=tcp": 300,
    }
    bindings = registrar.bindings("alice", T0 + 100)
    assert [b.q for b in bindings] == [None, 0.9, 0.5]  # highest q first; no q counts as 1.0
    assert {b.transport for b in bindings} == {"udp", "tcp"}
    assert registrar.is_registered_source(("198.51.100.20", 33333), T0 + 100) == "alice"
    # a query (no Contact) lists everything with the time left and changes nothing
    response = desk.send(T0 + 200, contacts=())
    assert response.status_code == 200
    assert contacts_of(response) == {
        "sip:alice@192.168.1.20:5062": 400,
        "sip:alice@192.168.1.20:5064": 400,
        "sip:alice@10.9.9.9:5060;transport=tcp": 200,
    }
    assert response.headers.get("Date") == WALL_DATE
    assert len(drain(registrar)) == 3
    assert registrar.users(T0 + 200) == ["alice"]


def test_response_contacts_keep_parameters() -> None:
    registrar = make_registrar()
    phone = Phone(registrar)
    instance = '"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"'
    response = phone.register(
        T0, contacts=(f"<sip:alice@192.168.1.20:5062;ob>;+sip.instance={instance};expires=900",)
    )
    [value] = response.headers.get_all("Contact")
    address = parse_name_addr(value)
    assert str(address.uri) == "sip:alice@192.168.1.20:5062;ob"
    assert address.params == {"+sip.instance": instance, "expires": "900"}


def test_refresh_updates_source_without_event() -> None:
    registrar = make_registrar()
    phone = Phone(registrar)
    assert phone.register(T0, expires=600).status_code == 200
    drain(registrar)
    phone.source = ("203.0.113.50", 40999)  # the NAT mapping changed
    response = phone.register(T0 + 500, expires=600)  # the nonce has expired meanwhile: 401 stale, then 200
    assert contacts_of(response) == {"sip:alice@192.168.1.20:5062;transport=udp": 600}
    [binding] = registrar.bindings("alice", T0 + 500)
    assert binding.source == ("203.0.113.50", 40999) and binding.expires_at == T0 + 1100
    assert drain(registrar) == []
    assert registrar.is_registered_source(ALICE_NAT, T0 + 500) is None


def test_unregister_with_expires_zero() -> None:
    registrar = make_registrar()
    phone = Phone(registrar)
    phone.register(T0, contacts=("<sip:alice@10.0.0.1>", "<sip:alice@10.0.0.2>"))
    drain(registrar)
    response = phone.send(T0 + 10, contacts=("<sip:alice@10.0.0.1>",), expires=0)
    assert response.status_code == 200
    assert contacts_of(response) == {"sip:alice@10.0.0.2": 3590}
    assert drain(registrar) == [BindingRemoved("alice", parse_name_addr("<sip:alice@10.0.0.1>"))]
    response = phone.send(T0 + 20, contacts=("<sip:alice@10.0.0.2>;expires=0",), expires=3600)
    assert response.headers.get_all("Contact") == []
    assert registrar.bindings("alice", T0 + 20) == []
    # removing what is not bound is fine and silent
    assert phone.send(T0 + 30, contacts=("<sip:alice@10.0.0.9>",), expires=0).status_code == 200
    assert drain(registrar) == [BindingRemoved("alice", parse_name_addr("<sip:alice@10.0.0.2>"))]


def test_unregister_all_with_star() -> None:
    registrar = make_registrar()
    Phone(registrar, call_id="other@x").register(T0, contacts=("<sip:alice@10.0.0.1>",))
    phone = Phone(registrar)
    phone.register(T0, contacts=("<sip:alice@10.0.0.2>",))
    Phone(registrar, user="bob").register(T0, contacts=("<sip:bob@10.0.0.3>",))
    drain(registrar)
    response = phone.send(T0 + 1, contacts=("*",), expires=0)
    assert response.status_code == 200
    assert response.headers.get_all("Contact") == []
    assert registrar.bindings("alice", T0 + 1) == []
    assert len(registrar.bindings("bob", T0 + 1)) == 1
    assert sorted(str(e.contact.uri) for e in drain(registrar) if isinstance(e, BindingRemoved)) == [
        "sip:alice@10.0.0.1",
        "sip:alice@10.0.0.2",
    ]


@pytest.mark.parametrize("expires", [3600, None])
def test_star_needs_expires_zero(expires: int | None) -> None:
    registrar = make_registrar()
    phone = Phone(registrar)
    phone.register(T0, contacts=("<sip:alice@10.0.0.2>",))
    response = phone.send(T0 + 1, contacts=("*",), expires=expires)
    assert (response.status_code, response.reason) == (400, "Bad Request")
    assert len(registrar.bindings("alice", T0 + 1)) == 1


def test_star_with_other_contacts_is_400() -> None:
    """The parser refuses this on the wire already; the registrar holds even for a request built in code."""
    registrar = make_registrar()
    phone = Phone(registrar)
    phone.register(T0, contacts=("<sip:alice@10.0.0.2>",))
    phone.cseq += 1
    data = register_bytes(
        call_id=phone.call_id,
        cseq=phone.cseq,
        contacts=("*",),
        expires=0,
        authorization=phone.authorization(),
    )
    request = parse_request(data)
    request.headers.add("Contact", "<sip:alice@10.0.0.1>")
    response = registrar.handle_register(request, ALICE_NAT, "udp", T0 + 1)
    assert response.status_code == 400
    assert len(registrar.bindings("alice", T0 + 1)) == 1


def test_call_id_cseq_ordering() -> None:
    """RFC 3261 §10.3 step 7: same Call-ID needs a higher CSeq; another Call-ID always updates."""
    registrar = make_registrar()
    phone = Phone(registrar)
    assert phone.register(T0, expires=600).status_code == 200  # CSeq 2 stored
    phone.cseq = 1  # the next send uses CSeq 2 again: an old request arriving late
    response = phone.send(T0 + 5, expires=0)
    assert response.status_code == 500
    assert len(registrar.bindings("alice", T0 + 5)) == 1
    phone.cseq = 0  # lower still, with the wildcard: also refused, nothing removed
    assert phone.send(T0 + 6, contacts=("*",), expires=0).status_code == 500
    assert len(registrar.bindings("alice", T0 + 6)) == 1
    other = Phone(registrar, call_id="rebooted-phone@192.168.1.20")  # after a reboot: new Call-ID, CSeq 1
    other.take_challenge(other.send(T0 + 7))
    other.cseq = 0
    response = other.send(T0 + 7, expires=900)
    assert response.status_code == 200
    [binding] = registrar.bindings("alice", T0 + 7)
    assert (binding.call_id, binding.cseq, binding.expires_at) == ("rebooted-phone@192.168.1.20", 1, T0 + 907)


def test_expiry_over_time() -> None:
    registrar = make_registrar()
    phone = Phone(registrar)
    phone.register(T0, contacts=("<sip:alice@10.0.0.1>;expires=100", "<sip:alice@10.0.0.2>;expires=200"))
    drain(registrar)
    assert registrar.get_timer() == T0 + 100
    assert len(registrar.bindings("alice", T0 + 99.9)) == 2
    assert [str(b.contact.uri) for b in registrar.bindings("alice", T0 + 100)] == ["sip:alice@10.0.0.2"]
    assert registrar.expire(T0 + 50) == 0 and drain(registrar) == []
    assert registrar.expire(T0 + 150) == 1
    assert drain(registrar) == [BindingExpired("alice", parse_name_addr("<sip:alice@10.0.0.1>;expires=100"))]
    assert registrar.get_timer() == T0 + 200
    assert registrar.is_registered_source(ALICE_NAT, T0 + 150) == "alice"
    assert registrar.expire(T0 + 250) == 1
    assert registrar.get_timer() is None and registrar.users(T0 + 250) == []
    assert registrar.is_registered_source(ALICE_NAT, T0 + 250) is None


def test_bindings_per_user_bounded() -> None:
    registrar = make_registrar(max_bindings_per_user=2)
    phone = Phone(registrar)
    phone.register(T0, contacts=("<sip:alice@10.0.0.1>;expires=100",))
    phone.send(T0 + 1, contacts=("<sip:alice@10.0.0.2>;expires=600",))
    drain(registrar)
    response = phone.send(T0 + 2, contacts=("<sip:alice@10.0.0.3>;expires=600",))
    assert set(contacts_of(response)) == {"sip:alice@10.0.0.2", "sip:alice@10.0.0.3"}
    assert drain(registrar) == [
        BindingRemoved("alice", parse_name_addr("<sip:alice@10.0.0.1>;expires=100")),
        BindingAdded("alice", parse_name_addr("<sip:alice@10.0.0.3>;expires=600")),
    ]


def test_unbind_by_application() -> None:
    registrar = make_registrar()
    Phone(registrar).register(T0, contacts=("<sip:alice@10.0.0.1>", "<sip:alice@10.0.0.2>"))
    drain(registrar)
    assert registrar.unbind("alice") == 2
    assert registrar.bindings("alice", T0) == [] and registrar.unbind("alice") == 0
    assert [type(e) for e in drain(registrar)] == [BindingRemoved, BindingRemoved]


def test_date_header_optional() -> None:
    auth = DigestAuthenticator(DOMAIN, USERS.get, secret=b"k" * 32)
    registrar = Registrar(auth, None, wall_clock=None)
    phone = Phone(registrar)
    response = phone.register(T0)
    assert response.status_code == 200 and "Date" not in response.headers
    with pytest.raises(LocalError):
        Registrar(auth, None, min_expires=100, max_expires=50)
