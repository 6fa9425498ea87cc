"""Digest authentication (mediagw.sip.auth): RFC 7616 / RFC 2617 vectors, server verification, throttling.

Requests are raw bytes parsed by mediagw.sip.message; the clock is an explicit float. Every digest that the
module computes is also computed here independently with hashlib, straight from RFC 7616 §3.4.1.
"""

from __future__ import annotations

import hashlib
import logging

import pytest

from mediagw.errors import LocalError, SipProtocolError
from mediagw.sip.auth import (
    AuthResult,
    AuthThrottle,
    DigestAuthenticator,
    build_authorization,
    digest_response,
    parse_auth_header,
    parse_challenge,
    select_challenge,
)
from mediagw.sip.message import SipRequest, parse_message

REALM = "mediagw.test"
USERS = {"alice": "s3cret-Alice", "bob": 'b0b,"quoted"'}
T0 = 1000.0
SECRET = b"unit-test-secret-0123456789abcdef"


# -- RFC 7616 §3.9.1 example -----------------------------------------------------------------------------

RFC7616_CHALLENGE = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC7616_SHA256_RESPONSE = "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
RFC7616_MD5_RESPONSE = "8ca523f5e9506fed4657c9700eebdbec"


def independent_response(
    hash_name: str,
    *,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    nc: str | None = None,
    cnonce: str | None = None,
    qop: str | None = None,
    sess: bool = False,
) -> str:
    """RFC 7616 §3.4.1 written out again, without the module under test."""

    def h(text: str) -> str:
        return hashlib.new(hash_name, text.encode("utf-8")).hexdigest()

    ha1 = h(f"{username}:{realm}:{password}")
    if sess:
        ha1 = h(f"{ha1}:{nonce}:{cnonce}")
    ha2 = h(f"{method}:{uri}")
    if qop is None:
        return h(f"{ha1}:{nonce}:{ha2}")
    return h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


@pytest.mark.parametrize(
    ("algorithm", "hash_name", "expected"),
    [("SHA-256", "sha256", RFC7616_SHA256_RESPONSE), ("MD5", "md5", RFC7616_MD5_RESPONSE)],
)
def test_rfc7616_example_known_answer(algorithm: str, hash_name: str, expected: str) -> None:
    challenge = parse_challenge(RFC7616_CHALLENGE.replace("algorithm=SHA-256", f"algorithm={algorithm}"))
    value = build_authorization(
        challenge,
        method="GET",
        uri="/dir/index.html",
        username="Mufasa",
        password="Circle of Life",
        cnonce=RFC7616_CNONCE,
    )
    scheme, params = parse_auth_header(value)
    assert scheme == "Digest"
    assert params["response"] == expected
    assert params == {
        "username": "Mufasa",
        "realm": "http-auth@example.org",
        "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        "uri": "/dir/index.html",
        "response": expected,
        "algorithm": algorithm,
        "cnonce": RFC7616_CNONCE,
        "qop": "auth",
        "nc": "00000001",
        "opaque": "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
    }
    assert expected == independent_response(
        hash_name,
        username="Mufasa",
        realm="http-auth@example.org",
        password="Circle of Life",
        method="GET",
        uri="/dir/index.html",
        nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        nc="00000001",
        cnonce=RFC7616_CNONCE,
        qop="auth",
    )


def test_rfc2617_example_known_answer() -> None:
    # RFC 2617 §3.5 (note the capital "Of" in that RFC's password)
    assert (
        digest_response(
            algorithm="MD5",
            username="Mufasa",
            realm="testrealm@host.com",
            password="Circle Of Life",
            method="GET",
            uri="/dir/index.html",
            nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
            qop="auth",
            nc="00000001",
            cnonce="0a4f113b",
        )
        == "6629fae49393a05397450978507c4ef1"
    )


def test_rfc7616_authorization_header_parses() -> None:
    value = (
        'Digest username="Mufasa",\t realm="http-auth@example.org", uri="/dir/index.html", '
        "algorithm=SHA-256, "
        'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, '
        f'cnonce="{RFC7616_CNONCE}", qop=auth, response="{RFC7616_SHA256_RESPONSE}", '
        'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )
    scheme, params = parse_auth_header(value)
    assert scheme == "Digest"
    assert params["nc"] == "00000001"
    assert params["qop"] == "auth"
    assert params["response"] == RFC7616_SHA256_RESPONSE


# -- header grammar ---------------------------------------------------------------------------------------


def test_parse_auth_header_quoting_and_case() -> None:
    scheme, params = parse_auth_header(
        'digest  Realm="a, b", NONCE="x\\"y\\\\z" ,, qop="auth,auth-int",stale=TRUE , algorithm=MD5-sess'
    )
    assert scheme == "digest"
    assert params == {
        "realm": "a, b",
        "nonce": 'x"y\\z',
        "qop": "auth,auth-int",
        "stale": "TRUE",
        "algorithm": "MD5-sess",
    }


def test_parse_auth_header_tolerates_unquoted_values() -> None:
    # seen from phones: nonce and uri without quotes; a token would not allow '/', '=', ':' or '@'
    _, params = parse_auth_header(
        "Digest username=alice, nonce=ab/c+d==, uri=sip:alice@mediagw.test, nc=00000001"
    )
    assert params == {
        "username": "alice",
        "nonce": "ab/c+d==",
        "uri": "sip:alice@mediagw.test",
        "nc": "00000001",
    }


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Digest realm",
        'Digest realm="unterminated',
        'Digest realm="a" nonce="b"',
        'Digest realm="a", realm="b"',
        "Digest =x",
        'Digest"realm"="a"',
    ],
)
def test_parse_auth_header_rejects_malformed(value: str) -> None:
    with pytest.raises(SipProtocolError):
        parse_auth_header(value)


def test_parse_challenge_requires_digest_realm_nonce() -> None:
    with pytest.raises(SipProtocolError):
        parse_challenge('Basic realm="x"')
    with pytest.raises(SipProtocolError):
        parse_challenge('Digest realm="x"')


def test_select_challenge_prefers_sha256() -> None:
    values = [
        'Digest realm="r", nonce="n1", algorithm=MD5, qop="auth"',
        'Digest realm="r", nonce="n2", algorithm=SHA-256, qop="auth"',
        'Digest realm="r", nonce="n3", algorithm=UNKNOWN-HASH, qop="auth"',
        "garbage",
    ]
    chosen = select_challenge(values)
    assert chosen is not None and chosen["nonce"] == "n2"
    assert select_challenge(values[:1]) == parse_challenge(values[0])
    assert select_challenge(["garbage"]) is None


def test_build_authorization_rfc2069_and_sess_and_escaping() -> None:
    # no qop in the challenge: the RFC 2069 form, without nc/cnonce
    value = build_authorization(
        {"realm": "r", "nonce": "abc"}, method="REGISTER", uri="sip:x", username="u", password="p", cnonce="c"
    )
    _, params = parse_auth_header(value)
    assert "nc" not in params and "qop" not in params and "cnonce" not in params
    assert params["algorithm"] == "MD5"
    assert params["response"] == independent_response(
        "md5", username="u", realm="r", password="p", method="REGISTER", uri="sip:x", nonce="abc"
    )
    # SHA-256-sess with qop, user name that needs escaping
    value = build_authorization(
        {"realm": "r", "nonce": "abc", "qop": "auth", "algorithm": "SHA-256-sess"},
        method="REGISTER",
        uri="sip:x",
        username='we"ird\\',
        password="p",
        cnonce="c",
        nc=0x1F,
    )
    _, params = parse_auth_header(value)
    assert params["username"] == 'we"ird\\'
    assert params["nc"] == "0000001f"
    assert params["response"] == independent_response(
        "sha256",
        username='we"ird\\',
        realm="r",
        password="p",
        method="REGISTER",
        uri="sip:x",
        nonce="abc",
        nc="0000001f",
        cnonce="c",
        qop="auth",
        sess=True,
    )


def test_build_authorization_auth_int_and_errors() -> None:
    body = b"v=0\r\n"
    value = build_authorization(
        {"realm": "r", "nonce": "n", "qop": "auth-int"},
        method="INVITE",
        uri="sip:x",
        username="u",
        password="p",
        cnonce="c",
        body=body,
    )
    _, params = parse_auth_header(value)

    def h(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha2 = h(f"INVITE:sip:x:{hashlib.md5(body).hexdigest()}")
    assert params["response"] == h(f"{h('u:r:p')}:n:00000001:c:auth-int:{ha2}")
    with pytest.raises(SipProtocolError):
        build_authorization(
            {"realm": "r", "nonce": "n", "algorithm": "SHA3"},
            method="M",
            uri="u",
            username="u",
            password="p",
            cnonce="c",
        )
    with pytest.raises(SipProtocolError):
        build_authorization(
            {"realm": "r", "nonce": "n", "qop": "bogus"},
            method="M",
            uri="u",
            username="u",
            password="p",
            cnonce="c",
        )
    with pytest.raises(LocalError):
        digest_response(
            algorithm="SHA3", username="u", realm="r", password="p", method="M", uri="u", nonce="n"
        )


# -- server: DigestAuthenticator ---------------------------------------------------------------------------


def make_auth(**kwargs: object) -> DigestAuthenticator:
    kwargs.setdefault("secret", SECRET)
    return DigestAuthenticator(REALM, USERS.get, **kwargs)  # type: ignore[arg-type]


def request_with(
    authorization: str | None,
    *,
    header: str = "Authorization",
    uri: str = "sip:mediagw.test",
    method: str = "REGISTER",
) -> SipRequest:
    lines = [
        f"{method} {uri} SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-auth-1;rport",
        "Max-Forwards: 70",
        "From: <sip:alice@mediagw.test>;tag=f1",
        "To: <sip:alice@mediagw.test>",
        "Call-ID: auth-test-1@192.0.2.10",
        f"CSeq: 2 {method}",
        "Contact: <sip:alice@192.0.2.10:5062>",
    ]
    if authorization is not None:
        lines.append(f"{header}: {authorization}")
    lines += ["Content-Length: 0", "", ""]
    message = parse_message("\r\n".join(lines).encode())
    assert isinstance(message, SipRequest)
    return message


def answer(
    auth: DigestAuthenticator,
    now: float,
    *,
    algorithm: str = "SHA-256",
    username: str = "alice",
    password: str | None = None,
    nc: int = 1,
    uri: str = "sip:mediagw.test",
    challenge: dict[str, str] | None = None,
) -> tuple[str, dict[str, str]]:
    """Authorization value answering a fresh challenge of ``auth`` (or ``challenge``) with ``algorithm``."""
    if challenge is None:
        chosen = [parse_challenge(v) for v in auth.challenge(now)]
        challenge = next(c for c in chosen if c["algorithm"] == algorithm)
    value = build_authorization(
        challenge,
        method="REGISTER",
        uri=uri,
        username=username,
        password=USERS[username] if password is None else password,
        cnonce="0a4f113b",
        nc=nc,
    )
    return value, challenge


def test_challenge_lists_sha256_first() -> None:
    auth = make_auth(algorithms=("MD5", "SHA-256"))
    values = auth.challenge(T0)
    assert [parse_challenge(v)["algorithm"] for v in values] == ["SHA-256", "MD5"]
    for value in values:
        params = parse_challenge(value)
        assert params["realm"] == REALM
        assert params["qop"] == "auth"
        assert params["opaque"]
        assert "stale" not in params
    assert parse_challenge(values[0])["nonce"] == parse_challenge(values[1])["nonce"]
    stale = [parse_challenge(v) for v in auth.challenge(T0, stale=True)]
    assert all(p["stale"] == "true" for p in stale)
    assert auth.challenge(T0) != auth.challenge(T0)  # fresh random part per challenge


@pytest.mark.parametrize(("algorithm", "hash_name"), [("SHA-256", "sha256"), ("MD5", "md5")])
def test_verify_success_independent_digest(algorithm: str, hash_name: str) -> None:
    auth = make_auth()
    challenge = next(parse_challenge(v) for v in auth.challenge(T0) if algorithm in v)
    response = independent_response(
        hash_name,
        username="alice",
        realm=REALM,
        password=USERS["alice"],
        method="REGISTER",
        uri="sip:mediagw.test",
        nonce=challenge["nonce"],
        nc="00000001",
        cnonce="xyz",
        qop="auth",
    )
    value = (
        f'Digest username="alice", realm="{REALM}", nonce="{challenge["nonce"]}", uri="sip:mediagw.test", '
        f'response="{response.upper()}", algorithm={algorithm}, cnonce="xyz", qop=auth, nc=00000001, '
        f'opaque="{challenge["opaque"]}"'
    )
    result = auth.verify(request_with(value), T0 + 1)
    assert result == AuthResult(True, username="alice", algorithm=algorithm)
    # and the module's own client helper agrees
    helper_value, _ = answer(auth, T0, algorithm=algorithm, challenge=challenge, nc=2)
    assert parse_auth_header(helper_value)[1]["response"] == independent_response(
        hash_name,
        username="alice",
        realm=REALM,
        password=USERS["alice"],
        method="REGISTER",
        uri="sip:mediagw.test",
        nonce=challenge["nonce"],
        nc="00000002",
        cnonce="0a4f113b",
        qop="auth",
    )
    assert auth.verify(request_with(helper_value), T0 + 2).ok


def test_verify_password_with_quotes_and_comma() -> None:
    auth = make_auth()
    value, _ = answer(auth, T0, username="bob")
    assert auth.verify(request_with(value), T0).username == "bob"


def test_wrong_password_and_unknown_user_are_the_same_failure() -> None:
    auth = make_auth()
    value, _ = answer(auth, T0, password="guess")
    result = auth.verify(request_with(value), T0)
    assert (result.ok, result.reason, result.stale, result.is_failure) == (
        False,
        "bad-credentials",
        False,
        True,
    )
    challenge = parse_challenge(auth.challenge(T0)[0])
    value = build_authorization(
        challenge, method="REGISTER", uri="sip:mediagw.test", username="mallory", password="x", cnonce="c"
    )
    result = auth.verify(request_with(value), T0)
    assert (result.ok, result.reason, result.username) == (False, "bad-credentials", "mallory")


def test_expired_nonce_is_stale_only_with_right_password() -> None:
    auth = make_auth(nonce_ttl=300.0)
    good, challenge = answer(auth, T0)
    bad, _ = answer(auth, T0, password="nope", challenge=challenge)
    late = T0 + 300.5
    assert auth.verify(request_with(good), late) == AuthResult(
        False, username="alice", stale=True, reason="stale-nonce", algorithm="SHA-256"
    )
    assert auth.verify(request_with(bad), late).reason == "bad-credentials"
    # a nonce from the future (a clock that went backwards, or forgery) is not accepted either
    assert auth.verify(request_with(good), T0 - 10).stale


def test_nonce_from_other_secret_or_tampered() -> None:
    before_restart = make_auth(secret=b"old-secret")
    good, challenge = answer(before_restart, T0)
    after_restart = make_auth(secret=b"new-secret")
    result = after_restart.verify(request_with(good), T0 + 1)
    assert (result.ok, result.stale, result.reason) == (False, True, "stale-nonce")
    # a tampered nonce with a digest computed over it by someone without the password
    forged = dict(challenge, nonce=challenge["nonce"][:-2] + "AA")
    value, _ = answer(after_restart, T0, password="guess", challenge=forged)
    assert after_restart.verify(request_with(value), T0 + 1).reason == "bad-credentials"


def test_opaque_must_match_when_present() -> None:
    auth = make_auth()
    challenge = parse_challenge(auth.challenge(T0)[0])
    value, _ = answer(auth, T0, challenge=dict(challenge, opaque="not-ours"))
    assert auth.verify(request_with(value), T0).reason == "stale-nonce"
    without_opaque = {k: v for k, v in challenge.items() if k != "opaque"}
    value, _ = answer(auth, T0, challenge=without_opaque)
    assert auth.verify(request_with(value), T0).ok


def test_replayed_nc_rejected() -> None:
    auth = make_auth()
    first, challenge = answer(auth, T0, nc=1)
    assert auth.verify(request_with(first), T0).ok
    replay = auth.verify(request_with(first), T0 + 1)
    assert (replay.ok, replay.stale, replay.reason, replay.is_failure) == (False, True, "replayed-nc", False)
    third, _ = answer(auth, T0, nc=3, challenge=challenge)
    assert auth.verify(request_with(third), T0 + 2).ok
    second, _ = answer(auth, T0, nc=2, challenge=challenge)  # lower than the highest seen
    assert auth.verify(request_with(second), T0 + 3).reason == "replayed-nc"


def test_replay_table_is_bounded_without_reopening_replays() -> None:
    auth = make_auth(max_tracked_nonces=2)
    used = []
    for i in range(3):
        value, challenge = answer(auth, T0 + i, nc=1)
        assert auth.verify(request_with(value), T0 + i).ok
        used.append((value, challenge))
    assert len(auth._nonce_counts) == 2  # the bound is the point of this test
    # the evicted (oldest) nonce cannot be replayed: it now counts as expired
    assert auth.verify(request_with(used[0][0]), T0 + 3).reason == "stale-nonce"
    value, _ = answer(auth, T0, nc=2, challenge=used[0][1])
    assert auth.verify(request_with(value), T0 + 3).reason == "stale-nonce"
    # the tracked ones still detect replays and accept higher counts
    assert auth.verify(request_with(used[2][0]), T0 + 3).reason == "replayed-nc"
    value, _ = answer(auth, T0, nc=2, challenge=used[2][1])
    assert auth.verify(request_with(value), T0 + 3).ok
    auth.purge(T0 + 1000)
    assert not auth._nonce_counts


def test_missing_wrong_realm_malformed() -> None:
    auth = make_auth()
    assert auth.verify(request_with(None), T0).reason == "missing"
    assert auth.verify(request_with('Digest realm="unterminated'), T0).reason == "malformed"
    assert auth.verify(request_with("Bearer abc=="), T0).reason == "missing"
    challenge = parse_challenge(auth.challenge(T0)[0])
    value, _ = answer(auth, T0, challenge=dict(challenge, realm="other.realm"))
    assert auth.verify(request_with(value), T0).reason == "wrong-realm"
    no_response = 'Digest username="alice", realm="mediagw.test", nonce="n", uri="sip:mediagw.test"'
    assert auth.verify(request_with(no_response), T0).reason == "malformed"
    value, _ = answer(auth, T0, challenge=challenge)
    bad_nc = value.replace("nc=00000001", "nc=1")
    assert auth.verify(request_with(bad_nc), T0).reason == "malformed"
    userhash = value + ", userhash=true"
    assert auth.verify(request_with(userhash), T0).reason == "malformed"


def test_algorithm_must_have_been_offered() -> None:
    auth = make_auth(algorithms=("SHA-256",))
    assert [parse_challenge(v)["algorithm"] for v in auth.challenge(T0)] == ["SHA-256"]
    challenge = parse_challenge(auth.challenge(T0)[0])
    value, _ = answer(auth, T0, challenge=dict(challenge, algorithm="MD5"))
    assert auth.verify(request_with(value), T0).reason == "unsupported-algorithm"
    with pytest.raises(LocalError):
        make_auth(algorithms=("SHA-1",))


def test_sess_algorithm_when_configured() -> None:
    auth = make_auth(algorithms=("SHA-256-sess",))
    value, _ = answer(auth, T0, algorithm="SHA-256-sess")
    assert auth.verify(request_with(value), T0).ok


def test_rfc2069_legacy_md5_without_qop() -> None:
    auth = make_auth()
    challenge = parse_challenge(auth.challenge(T0)[1])
    assert challenge["algorithm"] == "MD5"
    legacy = {k: v for k, v in challenge.items() if k not in ("qop", "algorithm")}
    value, _ = answer(auth, T0, challenge=legacy)
    assert "qop" not in parse_auth_header(value)[1]
    assert auth.verify(request_with(value), T0).ok
    strict = make_auth(allow_rfc2069=False)
    assert strict.verify(request_with(value), T0).reason == "qop-required"
    # SHA-256 never without qop (RFC 7616 §3.4)
    sha = {k: v for k, v in parse_challenge(auth.challenge(T0)[0]).items() if k != "qop"}
    value, _ = answer(auth, T0, challenge=sha)
    assert auth.verify(request_with(value), T0).reason == "qop-required"


@pytest.mark.parametrize(
    ("digest_uri", "ok"),
    [
        ("sip:mediagw.test", True),
        ("sip:MediaGW.test:5060", True),
        ("sip:mediagw.test;transport=udp", True),
        ("sip:mediagw.test:5080", False),
        ("sips:mediagw.test", False),
        ("sip:other.test", False),
        ("sip:alice@mediagw.test", False),
        ("not a uri", False),
    ],
)
def test_uri_directive_compared_leniently(digest_uri: str, ok: bool) -> None:
    auth = make_auth()
    value, _ = answer(auth, T0, uri=digest_uri)
    result = auth.verify(request_with(value), T0)
    assert result.ok is ok
    if not ok:
        assert result.reason == "uri-mismatch"


def test_proxy_authorization_header() -> None:
    auth = make_auth()
    value, _ = answer(auth, T0)
    request = request_with(value, header="Proxy-Authorization")
    assert auth.verify(request, T0).reason == "missing"
    assert auth.verify(request, T0, header="Proxy-Authorization").ok


def test_picks_credentials_for_our_realm_among_several() -> None:
    auth = make_auth()
    value, _ = answer(auth, T0)
    other = value.replace(f'realm="{REALM}"', 'realm="elsewhere"')
    lines = [
        "REGISTER sip:mediagw.test SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-auth-2",
        "From: <sip:alice@mediagw.test>;tag=f1",
        "To: <sip:alice@mediagw.test>",
        "Call-ID: two-creds",
        "CSeq: 1 REGISTER",
        f"Authorization: {other}",
        f"Authorization: {value}",
        "Content-Length: 0",
        "",
        "",
    ]
    request = parse_message("\r\n".join(lines).encode())
    assert isinstance(request, SipRequest)
    assert auth.verify(request, T0).ok


# -- AuthThrottle -----------------------------------------------------------------------------------------


def test_throttle_blocks_after_max_failures_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    throttle = AuthThrottle(max_failures=3, window=60.0, block_for=30.0)
    source = ("198.51.100.7", 5060)
    caplog.set_level(logging.INFO, logger="mediagw.sip.auth")
    assert throttle.record_failure(source, 0.0) is False
    assert throttle.record_failure(("198.51.100.7", 40000), 1.0) is False  # same IP, other port
    assert not throttle.is_blocked(source, 1.5)
    assert throttle.failures(source, 1.5) == 2
    assert throttle.record_failure(source, 2.0) is True
    assert throttle.is_blocked(source, 2.0)
    assert throttle.is_blocked("198.51.100.7", 31.9)
    assert not throttle.is_blocked(("198.51.100.8", 5060), 3.0)
    for t in (3.0, 4.0, 5.0):  # failures during the block are not counted and not logged
        assert throttle.record_failure(source, t) is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "198.51.100.7" in warnings[0].getMessage()
    assert not throttle.is_blocked(source, 32.0)
    assert throttle.failures(source, 32.0) == 0


def test_throttle_window_slides() -> None:
    throttle = AuthThrottle(max_failures=3, window=10.0, block_for=30.0)
    source = ("203.0.113.1", 5060)
    for t in (0.0, 6.0, 12.0, 18.0, 24.0):  # never three within 10 s
        assert throttle.record_failure(source, t) is False
    assert not throttle.is_blocked(source, 25.0)
    assert throttle.record_failure(source, 25.0) is True
    throttle.purge(100.0)
    assert throttle.failures(source, 100.0) == 0 and not throttle.is_blocked(source, 100.0)


def test_throttle_exempt_networks() -> None:
    throttle = AuthThrottle(
        max_failures=1, window=60.0, block_for=60.0, exempt=("10.20.0.0/16", "2001:db8::/32")
    )
    assert throttle.record_failure(("10.20.3.4", 5060), 0.0) is False
    assert throttle.record_failure(("2001:db8::7", 5060), 0.0) is False
    assert not throttle.is_blocked(("10.20.3.4", 5060), 1.0)
    assert throttle.record_failure(("10.21.3.4", 5060), 0.0) is True
    with pytest.raises(LocalError):
        AuthThrottle(exempt=("not-a-network",))


def test_throttle_memory_bounded() -> None:
    throttle = AuthThrottle(max_failures=2, window=60.0, block_for=60.0, max_sources=3)
    for i in range(10):
        throttle.record_failure((f"10.0.0.{i}", 5060), float(i))
    assert len(throttle._failures) <= 3
    with pytest.raises(LocalError):
        AuthThrottle(max_failures=0)
