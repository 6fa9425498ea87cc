"""SIP digest authentication: RFC 3261 §22 on top of RFC 7616 / RFC 2617 (and RFC 2069 for old MD5 clients).

Theory of operation
-------------------
The server side, ``DigestAuthenticator``, keeps no per-challenge state. A nonce is a timestamp (the
``now`` the challenge was made at, in milliseconds), 8 random bytes and an HMAC-SHA-256 over both, keyed
with a secret that lives only in this process (the shape RFC 7616 §3.3 suggests). Any node holding the same
secret can check a nonce; a restart with a fresh random secret invalidates every outstanding nonce, which a
client with the right password only sees as ``stale=true`` (below). The opaque value derives from the secret.

``verify()`` reads the credentials for our realm, recomputes the response with the password from ``lookup``
and compares in constant time (``hmac.compare_digest``). The outcome is an ``AuthResult``; ``verify`` never
raises for anything a peer sent. The nonce is judged after the digest:

* digest wrong                      -> ``bad-credentials`` (a failure the caller feeds to ``AuthThrottle``);
* digest right, nonce expired, forged by an older secret, or opaque from another secret
                                    -> ``stale-nonce``: challenge again with ``stale=true`` (RFC 7616 §3.3,
                                       RFC 2617 §3.2.1: the client knows the password, it need not re-prompt);
* digest right, nonce good, nc not above the highest nc seen for that nonce
                                    -> ``replayed-nc`` (RFC 7616 §3.4: nc detects replays), also answered with
                                       ``stale=true`` so that an honest but confused client recovers at once.

Replay protection remembers the highest nc per nonce in a bounded table. When the table is full its oldest
entry is dropped and every nonce issued at or before that one's timestamp is from then on treated as expired,
so dropping memory never reopens a replay window. Legacy RFC 2069 responses (no qop, MD5 only, allowed by
default because some deployed phones still send them) carry no nc and cannot be checked for replay inside
the nonce lifetime; set ``allow_rfc2069=False`` to refuse them.

``AuthThrottle`` counts failures per source IP in a sliding window and blocks a source that reaches
``max_failures`` for ``block_for`` seconds; the block is logged once, naming the source.

The client helpers (``parse_challenge``, ``select_challenge``, ``build_authorization``, ``digest_response``)
answer a trunk's or a test peer's challenge. Passwords, HA1 values and responses are never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import os
import re
import struct
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mediagw.errors import LocalError, SipProtocolError

if TYPE_CHECKING:
    from mediagw.sip.message import SipRequest

__all__ = [
    "SUPPORTED_ALGORITHMS",
    "AuthResult",
    "AuthThrottle",
    "DigestAuthenticator",
    "build_authorization",
    "digest_response",
    "parse_auth_header",
    "parse_challenge",
    "select_challenge",
]

logger = logging.getLogger(__name__)

Address = tuple[str, int]

# Hash function per algorithm token (RFC 7616 §3.2, registry in §6.1). SHA-512-256 only where the OpenSSL
# build behind hashlib offers it.
_HASHES: dict[str, str] = {"MD5": "md5", "SHA-256": "sha256"}
if "sha512_256" in hashlib.algorithms_available:
    _HASHES["SHA-512-256"] = "sha512_256"

_PREFERENCE: dict[str, int] = {"SHA-512-256": 3, "SHA-256": 2, "MD5": 1}
"""Strongest first when several challenges are offered (RFC 8760 §2.4: the preferred one first)."""

SUPPORTED_ALGORITHMS: tuple[str, ...] = tuple(
    name for base in sorted(_HASHES, key=lambda b: -_PREFERENCE[b]) for name in (base, base + "-sess")
)
"""Every algorithm token this module computes, plain and session variants (RFC 7616 §3.4.2)."""

DEFAULT_NONCE_TTL = 300.0  # seconds; RFC 7616 §5.5 leaves the lifetime to the server
MAX_NONCE_SKEW = 1.0  # seconds a nonce may appear to come from the future before it counts as forged
_NONCE_BODY = struct.Struct(">q8s")  # timestamp in ms, 8 random bytes
_NONCE_MAC_LEN = 16
_NC_RE = re.compile(r"[0-9a-fA-F]{8}\Z")  # nc-value = 8LHEX, RFC 7616 §3.4


# ---------------------------------------------------------------------------------------------------------
# Header grammar: RFC 7235 §2.1 / RFC 3261 §25.1 (challenge, credentials, auth-param)
# ---------------------------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# An unquoted parameter value should be a token; several phones send nonce/uri/nc unquoted with '/', '=', ':'
# or '@' in them, so anything up to a comma, blank or quote is taken.
_BARE_VALUE_RE = re.compile(r'[^\s,"]+')


def parse_auth_header(value: str) -> tuple[str, dict[str, str]]:
    """Split a WWW-Authenticate / Authorization value into its scheme and its parameters.

    Parameter names are lower-cased, quoted strings unquoted (``\\x`` escapes resolved, RFC 3261 §25.1).
    Raises SipProtocolError (400) on anything that is not ``scheme 1*SP auth-param *("," auth-param)`` or that
    repeats a parameter.
    """
    text = value.strip()
    match = _TOKEN_RE.match(text)
    if match is None:
        raise SipProtocolError("authentication header: missing scheme")
    scheme = match.group(0)
    pos = match.end()
    if pos < len(text) and text[pos] not in " \t":
        raise SipProtocolError("authentication header: malformed scheme")
    params: dict[str, str] = {}
    n = len(text)
    expect_param = True
    while pos < n:
        ch = text[pos]
        if ch in " \t":
            pos += 1
            continue
        if ch == ",":
            expect_param = True
            pos += 1
            continue
        if not expect_param:
            raise SipProtocolError("authentication header: missing comma between parameters")
        name_match = _TOKEN_RE.match(text, pos)
        if name_match is None:
            raise SipProtocolError("authentication header: malformed parameter name")
        name = name_match.group(0).lower()
        pos = name_match.end()
        while pos < n and text[pos] in " \t":
            pos += 1
        if pos >= n or text[pos] != "=":
            raise SipProtocolError(f"authentication header: parameter {name!r} has no value")
        pos += 1
        while pos < n and text[pos] in " \t":
            pos += 1
        if pos < n and text[pos] == '"':
            pos += 1
            chars: list[str] = []
            while True:
                if pos >= n:
                    raise SipProtocolError(f"authentication header: unterminated quoted value of {name!r}")
                ch = text[pos]
                if ch == "\\" and pos + 1 < n:
                    chars.append(text[pos + 1])
                    pos += 2
                elif ch == '"':
                    pos += 1
                    break
                else:
                    chars.append(ch)
                    pos += 1
            param_value = "".join(chars)
        else:
            value_match = _BARE_VALUE_RE.match(text, pos)
            if value_match is None:
                raise SipProtocolError(f"authentication header: malformed value of {name!r}")
            param_value = value_match.group(0)
            pos = value_match.end()
        if name in params:
            raise SipProtocolError(f"authentication header: parameter {name!r} repeated")
        params[name] = param_value
        expect_param = False
    return scheme, params


def _quote(value: str) -> str:
    """A quoted-string (RFC 3261 §25.1) holding ``value``."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _canonical_algorithm(token: str) -> str | None:
    """The supported algorithm spelled as in SUPPORTED_ALGORITHMS, matched case-insensitively, or None."""
    upper = token.strip().upper()
    for name in SUPPORTED_ALGORITHMS:
        if name.upper() == upper:
            return name
    return None


# ---------------------------------------------------------------------------------------------------------
# The digest computation (RFC 7616 §3.4.1 - §3.4.3; RFC 2617 §3.2.2.1 for the RFC 2069 form)
# ---------------------------------------------------------------------------------------------------------


def _hash(hash_name: str, data: str) -> str:
    return hashlib.new(hash_name, data.encode("utf-8")).hexdigest()


def digest_response(
    *,
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The request-digest (``response`` directive) as lower-case hex.

    ``nc`` is the 8-hex-digit string exactly as sent. ``qop`` None gives the RFC 2069 form
    ``H(HA1:nonce:HA2)``. Raises LocalError for an unsupported algorithm or qop, or a qop without nc/cnonce.
    """
    canonical = _canonical_algorithm(algorithm)
    if canonical is None:
        raise LocalError(f"unsupported digest algorithm {algorithm!r}")
    session = canonical.endswith("-sess")
    hash_name = _HASHES[canonical.removesuffix("-sess")]
    ha1 = _hash(hash_name, f"{username}:{realm}:{password}")
    if session:
        # RFC 7616 §3.4.2: A1 = H(user:realm:pass) ":" nonce ":" cnonce
        if cnonce is None:
            raise LocalError(f"{canonical} needs a cnonce")
        ha1 = _hash(hash_name, f"{ha1}:{nonce}:{cnonce}")
    if qop is None or qop == "auth":
        ha2 = _hash(hash_name, f"{method}:{uri}")  # RFC 7616 §3.4.3
    elif qop == "auth-int":
        body_hash = hashlib.new(hash_name, body).hexdigest()
        ha2 = _hash(hash_name, f"{method}:{uri}:{body_hash}")
    else:
        raise LocalError(f"unsupported qop {qop!r}")
    if qop is None:
        return _hash(hash_name, f"{ha1}:{nonce}:{ha2}")
    if nc is None or cnonce is None:
        raise LocalError("qop needs nc and cnonce")
    return _hash(hash_name, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


# ---------------------------------------------------------------------------------------------------------
# Client side
# ---------------------------------------------------------------------------------------------------------


def parse_challenge(value: str) -> dict[str, str]:
    """The parameters of one Digest WWW-Authenticate / Proxy-Authenticate value, names lower-cased.

    Raises SipProtocolError (400) when the value is malformed, not a Digest challenge, or lacks realm/nonce.
    """
    scheme, params = parse_auth_header(value)
    if scheme.lower() != "digest":
        raise SipProtocolError(f"challenge scheme {scheme!r} is not Digest")
    for required in ("realm", "nonce"):
        if required not in params:
            raise SipProtocolError(f"Digest challenge without {required}")
    return params


def select_challenge(values: Iterable[str]) -> dict[str, str] | None:
    """Of several challenge values (RFC 8760 §2.4), the parsed one with the strongest supported algorithm.

    Values that do not parse or name an algorithm this module lacks are skipped; None when none is usable.
    """
    best: dict[str, str] | None = None
    best_rank = 0
    for value in values:
        try:
            params = parse_challenge(value)
        except SipProtocolError:
            continue
        algorithm = _canonical_algorithm(params.get("algorithm", "MD5"))
        if algorithm is None:
            continue
        rank = _PREFERENCE[algorithm.removesuffix("-sess")]
        if rank > best_rank:
            best, best_rank = params, rank
    return best


def build_authorization(
    challenge: Mapping[str, str],
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    cnonce: str,
    nc: int = 1,
    body: bytes = b"",
) -> str:
    """An Authorization / Proxy-Authorization value answering ``challenge`` (from ``parse_challenge``).

    Picks qop ``auth`` when offered, else ``auth-int`` (hashing ``body``), else the RFC 2069 form (no qop,
    no nc/cnonce). Echoes opaque and algorithm. Raises SipProtocolError when the challenge names an algorithm
    or only qop values this module does not implement (the peer's doing).
    """
    algorithm_token = challenge.get("algorithm", "MD5")
    algorithm = _canonical_algorithm(algorithm_token)
    if algorithm is None:
        raise SipProtocolError(f"unsupported digest algorithm {algorithm_token!r} in challenge")
    realm = challenge["realm"]
    nonce = challenge["nonce"]
    qop: str | None = None
    if "qop" in challenge:
        offered = [item.lower() for item in _split_list(challenge["qop"])]
        if "auth" in offered:
            qop = "auth"
        elif "auth-int" in offered:
            qop = "auth-int"
        else:
            raise SipProtocolError(f"no supported qop in challenge ({challenge['qop']!r})")
    nc_value = f"{nc:08x}"
    session = algorithm.endswith("-sess")
    response = digest_response(
        algorithm=algorithm,
        username=username,
        realm=realm,
        password=password,
        method=method,
        uri=uri,
        nonce=nonce,
        qop=qop,
        nc=nc_value if qop else None,
        cnonce=cnonce if (qop or session) else None,
        body=body,
    )
    parts = [
        f"username={_quote(username)}",
        f"realm={_quote(realm)}",
        f"nonce={_quote(nonce)}",
        f"uri={_quote(uri)}",
        f"response={_quote(response)}",
        f"algorithm={algorithm_token}",
    ]
    if qop is not None or session:
        parts.append(f"cnonce={_quote(cnonce)}")
    if qop is not None:
        parts.append(f"qop={qop}")
        parts.append(f"nc={nc_value}")
    if "opaque" in challenge:
        parts.append(f"opaque={_quote(challenge['opaque'])}")
    return "Digest " + ", ".join(parts)


# ---------------------------------------------------------------------------------------------------------
# Server side
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthResult:
    """The outcome of ``DigestAuthenticator.verify``."""

    ok: bool
    """True when the credentials are valid for this request."""
    username: str | None = None
    """The authenticated user when ``ok``; the claimed user (untrusted) when credentials were read at all."""
    stale: bool = False
    """Challenge again with ``stale=true``: the digest was right but the nonce can no longer be used."""
    reason: str = "ok"
    """One of: ``ok``, ``missing``, ``malformed``, ``wrong-realm``, ``unsupported-algorithm``,
    ``qop-required``, ``uri-mismatch``, ``bad-credentials``, ``stale-nonce``, ``replayed-nc``."""
    algorithm: str | None = None
    """The algorithm the client used, when known."""

    @property
    def is_failure(self) -> bool:
        """True for a guessed or wrong password: what ``AuthThrottle.record_failure`` should count."""
        return self.reason == "bad-credentials"


class DigestAuthenticator:
    """Stateless-nonce digest verifier for one realm (RFC 3261 §22.4, RFC 7616 §3.3 - §3.5).

    ``lookup(username)`` returns the plain password or None for an unknown user (answered exactly like a wrong
    password, so that user names cannot be probed). ``algorithms`` lists what ``challenge`` offers and
    ``verify`` accepts; challenges come strongest first (RFC 8760 §2.4). ``secret`` keys the nonce HMAC;
    give every node of a cluster the same one. Raises LocalError for an unknown algorithm.
    """

    def __init__(
        self,
        realm: str,
        lookup: Callable[[str], str | None],
        *,
        algorithms: Iterable[str] = ("SHA-256", "MD5"),
        nonce_ttl: float = DEFAULT_NONCE_TTL,
        secret: bytes | None = None,
        allow_rfc2069: bool = True,
        max_tracked_nonces: int = 10_000,
    ) -> None:
        canonical: list[str] = []
        for token in algorithms:
            name = _canonical_algorithm(token)
            if name is None:
                raise LocalError(f"unsupported digest algorithm {token!r}")
            if name not in canonical:
                canonical.append(name)
        if not canonical:
            raise LocalError("DigestAuthenticator needs at least one algorithm")
        if nonce_ttl <= 0:
            raise LocalError("nonce_ttl must be positive")
        if max_tracked_nonces < 1:
            raise LocalError("max_tracked_nonces must be at least 1")
        self.realm = realm
        self.nonce_ttl = nonce_ttl
        self.allow_rfc2069 = allow_rfc2069
        self.algorithms: tuple[str, ...] = tuple(
            sorted(canonical, key=lambda a: -_PREFERENCE[a.removesuffix("-sess")])
        )
        self._lookup = lookup
        self._secret = secret if secret is not None else os.urandom(32)
        self._opaque = hmac.new(self._secret, b"opaque:" + realm.encode("utf-8"), hashlib.sha256).hexdigest()[
            :32
        ]
        self._max_tracked = max_tracked_nonces
        # nonce -> (issued at in ms, highest nc seen); insertion order = first use
        self._nonce_counts: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._nonce_floor_ms: int | None = None  # nonces issued at or before this are treated as expired

    # -- challenges -------------------------------------------------------------------------------------

    def challenge(self, now: float, *, stale: bool = False) -> list[str]:
        """WWW-Authenticate (or Proxy-Authenticate) values, one per algorithm, strongest first."""
        nonce = self.make_nonce(now)
        values = []
        for algorithm in self.algorithms:
            value = (
                f"Digest realm={_quote(self.realm)}, nonce={_quote(nonce)}, opaque={_quote(self._opaque)}, "
                f'algorithm={algorithm}, qop="auth"'
            )
            if stale:
                value += ", stale=true"
            values.append(value)
        return values

    def make_nonce(self, now: float) -> str:
        """A fresh nonce stamped with ``now``: base64url(ms timestamp, 8 random bytes, HMAC-SHA-256/128)."""
        body = _NONCE_BODY.pack(_to_ms(now), os.urandom(8))
        return base64.urlsafe_b64encode(body + self._nonce_mac(body)).decode("ascii").rstrip("=")

    def _nonce_mac(self, body: bytes) -> bytes:
        key_input = self.realm.encode("utf-8") + b"\x00" + body
        return hmac.new(self._secret, key_input, hashlib.sha256).digest()[:_NONCE_MAC_LEN]

    def _nonce_time_ms(self, nonce: str) -> int | None:
        """The timestamp of a nonce we issued, or None when it is not one of ours (bad HMAC, bad form)."""
        if len(nonce) > 64:
            return None
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (ValueError, TypeError):
            return None
        if len(raw) != _NONCE_BODY.size + _NONCE_MAC_LEN:
            return None
        body, mac = raw[: _NONCE_BODY.size], raw[_NONCE_BODY.size :]
        if not hmac.compare_digest(mac, self._nonce_mac(body)):
            return None
        issued_ms, _ = _NONCE_BODY.unpack(body)
        return int(issued_ms)

    def _nonce_is_fresh(self, issued_ms: int | None, now: float) -> bool:
        if issued_ms is None:
            return False
        now_ms = _to_ms(now)
        if issued_ms > now_ms + int(MAX_NONCE_SKEW * 1000):
            return False
        if now_ms - issued_ms > int(self.nonce_ttl * 1000):
            return False
        return self._nonce_floor_ms is None or issued_ms > self._nonce_floor_ms

    # -- verification -----------------------------------------------------------------------------------

    def verify(self, request: SipRequest, now: float, *, header: str = "Authorization") -> AuthResult:
        """Check the ``header`` credentials of ``request`` for this realm (RFC 3261 §22.4, RFC 7616 §3.4).

        Never raises for a peer's input; see ``AuthResult.reason`` for the outcomes. A success records the
        nonce count, so verifying the same request twice reports ``replayed-nc`` the second time.
        """
        params: dict[str, str] | None = None
        saw_digest = False
        malformed = False
        for value in request.headers.get_all(header):
            text = value.strip()
            if text[:6].lower() != "digest" or text[6:7] not in (" ", "\t"):
                continue  # another scheme (Basic, Bearer token68 ...): not ours to judge
            try:
                scheme, candidate = parse_auth_header(value)
            except SipProtocolError:
                malformed = True
                continue
            if scheme.lower() != "digest":
                continue
            saw_digest = True
            if candidate.get("realm") == self.realm:
                params = candidate
                break
        if params is None:
            if saw_digest:
                return AuthResult(False, reason="wrong-realm")
            return AuthResult(False, reason="malformed" if malformed else "missing")

        username = params.get("username")
        nonce = params.get("nonce")
        digest_uri = params.get("uri")
        response = params.get("response")
        if username is None or nonce is None or digest_uri is None or response is None:
            return AuthResult(False, username=username, reason="malformed")

        algorithm = _canonical_algorithm(params.get("algorithm", "MD5"))
        if algorithm is None or algorithm not in self.algorithms:
            return AuthResult(False, username=username, reason="unsupported-algorithm")
        if params.get("userhash", "false").lower() == "true":
            # RFC 7616 §3.4.4: only when the server offered userhash=true, which this one never does.
            return AuthResult(False, username=username, reason="malformed", algorithm=algorithm)

        qop = params.get("qop")
        nc = params.get("nc")
        cnonce = params.get("cnonce")
        if qop is None:
            # RFC 2069 form: only MD5, and only when allowed (RFC 7616 §3.4 makes qop mandatory).
            if algorithm != "MD5" or not self.allow_rfc2069:
                return AuthResult(False, username=username, reason="qop-required", algorithm=algorithm)
            nc = None
            cnonce = None
        else:
            qop = qop.lower()
            if qop not in ("auth", "auth-int") or nc is None or cnonce is None or not _NC_RE.match(nc):
                return AuthResult(False, username=username, reason="malformed", algorithm=algorithm)

        if not _uri_matches(digest_uri, request):
            # RFC 7616 §3.4.6: a uri directive that does not name the request target gets 400.
            return AuthResult(False, username=username, reason="uri-mismatch", algorithm=algorithm)

        password = self._lookup(username)
        known_user = password is not None
        if password is None:
            password = self._secret.hex()  # same work for unknown users; can never match a real digest
        expected = digest_response(
            algorithm=algorithm,
            username=username,
            realm=self.realm,
            password=password,
            method=request.method,
            uri=digest_uri,
            nonce=nonce,
            qop=qop,
            nc=nc,
            cnonce=cnonce,
            body=request.body,
        )
        digest_ok = hmac.compare_digest(expected.encode("ascii"), response.lower().encode("utf-8"))
        if not (digest_ok and known_user):
            return AuthResult(False, username=username, reason="bad-credentials", algorithm=algorithm)

        issued_ms = self._nonce_time_ms(nonce)
        opaque = params.get("opaque")
        opaque_ok = opaque is None or hmac.compare_digest(
            opaque.encode("utf-8"), self._opaque.encode("ascii")
        )
        if not opaque_ok or not self._nonce_is_fresh(issued_ms, now):
            return AuthResult(False, username=username, stale=True, reason="stale-nonce", algorithm=algorithm)
        assert issued_ms is not None  # _nonce_is_fresh returned True

        if nc is not None:
            count = int(nc, 16)
            seen = self._nonce_counts.get(nonce)
            if seen is not None and count <= seen[1]:
                return AuthResult(
                    False, username=username, stale=True, reason="replayed-nc", algorithm=algorithm
                )
            self._remember_count(nonce, issued_ms, count)
        return AuthResult(True, username=username, algorithm=algorithm)

    def _remember_count(self, nonce: str, issued_ms: int, count: int) -> None:
        if nonce in self._nonce_counts:
            self._nonce_counts[nonce] = (issued_ms, count)
            return
        self._nonce_counts[nonce] = (issued_ms, count)
        while len(self._nonce_counts) > self._max_tracked:
            _, (evicted_ms, _) = self._nonce_counts.popitem(last=False)
            if self._nonce_floor_ms is None or evicted_ms > self._nonce_floor_ms:
                self._nonce_floor_ms = evicted_ms

    def purge(self, now: float) -> None:
        """Forget nonce counts of nonces that have expired anyway (call now and then, e.g. from a timer)."""
        for nonce, (issued_ms, _) in list(self._nonce_counts.items()):
            if not self._nonce_is_fresh(issued_ms, now):
                del self._nonce_counts[nonce]


def _to_ms(now: float) -> int:
    return round(now * 1000.0)


_DEFAULT_PORTS = {"sip": 5060, "sips": 5061}


def _uri_matches(digest_uri: str, request: SipRequest) -> bool:
    """Whether the ``uri`` directive names the Request-URI (RFC 3261 §22.4 item 4, compared leniently).

    Equal strings match. Otherwise both are parsed and scheme, user, host (case-insensitive) and port (the
    scheme's default when absent) must agree; URI parameters are ignored, because several phones add or drop
    ``;transport=`` between the request line and the credentials.
    """
    request_uri = request.uri
    if digest_uri.strip() == str(request_uri):
        return True
    from mediagw.sip.grammar import parse_uri  # local import: grammar is only needed on this slow path

    try:
        parsed = parse_uri(digest_uri.strip())
    except SipProtocolError:
        return False
    scheme = (parsed.scheme or "").lower()
    if scheme != (request_uri.scheme or "").lower():
        return False
    if (parsed.user or None) != (request_uri.user or None):
        return False
    if (parsed.host or "").lower() != (request_uri.host or "").lower():
        return False
    default_port = _DEFAULT_PORTS.get(scheme)
    return (parsed.port or default_port) == (request_uri.port or default_port)


# ---------------------------------------------------------------------------------------------------------
# Throttling of failed attempts
# ---------------------------------------------------------------------------------------------------------


class AuthThrottle:
    """Per source IP: ``max_failures`` failed authentications within ``window`` seconds block the source for
    ``block_for`` seconds (counted from the failure that reached the limit).

    The block is logged once, at WARNING, naming the source; nothing is logged while it lasts. Memory is
    bounded by ``max_sources``: past it the least recently seen source is forgotten.

    Agents of one site often share a public address (one NAT), so a single phone with a stale password can
    block the whole floor; list such networks (CIDR strings, e.g. the office NAT or the agent VPN) in
    ``exempt`` to count nothing for them. Raises LocalError for bad limits or an invalid network.
    """

    def __init__(
        self,
        max_failures: int = 5,
        window: float = 60.0,
        block_for: float = 60.0,
        *,
        max_sources: int = 10_000,
        exempt: Iterable[str] = (),
    ) -> None:
        if max_failures < 1 or window <= 0 or block_for <= 0 or max_sources < 1:
            raise LocalError(
                "AuthThrottle needs max_failures >= 1, window > 0, block_for > 0, max_sources >= 1"
            )
        try:
            self.exempt = tuple(ipaddress.ip_network(network, strict=False) for network in exempt)
        except ValueError as error:
            raise LocalError(f"AuthThrottle exempt: {error}") from None
        self.max_failures = max_failures
        self.window = window
        self.block_for = block_for
        self._max_sources = max_sources
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._blocked_until: dict[str, float] = {}

    @staticmethod
    def _key(source: Address | str) -> str:
        return source if isinstance(source, str) else source[0]

    def is_blocked(self, source: Address | str, now: float) -> bool:
        """Whether ``source`` (an address or a bare host) is blocked at ``now``."""
        key = self._key(source)
        until = self._blocked_until.get(key)
        if until is None:
            return False
        if now < until:
            return True
        del self._blocked_until[key]
        return False

    def is_exempt(self, source: Address | str) -> bool:
        """Whether ``source`` lies in an ``exempt`` network (never counted, never blocked)."""
        if not self.exempt:
            return False
        try:
            address = ipaddress.ip_address(self._key(source))
        except ValueError:
            return False
        return any(address in network for network in self.exempt)

    def record_failure(self, source: Address | str, now: float) -> bool:
        """Count one failure; True when it makes ``source`` blocked (the block starts now)."""
        key = self._key(source)
        if self.is_blocked(key, now) or self.is_exempt(key):
            return False
        failures = self._failures.get(key)
        if failures is None:
            failures = deque()
            self._failures[key] = failures
        else:
            self._failures.move_to_end(key)
        failures.append(now)
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if len(failures) >= self.max_failures:
            del self._failures[key]
            self._blocked_until[key] = now + self.block_for
            logger.warning(
                "auth: blocking %s for %.0f s after %d failed authentications within %.0f s",
                key,
                self.block_for,
                self.max_failures,
                self.window,
            )
            self._evict()
            return True
        self._evict()
        return False

    def failures(self, source: Address | str, now: float) -> int:
        """How many failures of ``source`` still count at ``now``."""
        failures = self._failures.get(self._key(source))
        if failures is None:
            return 0
        return sum(1 for t in failures if t > now - self.window)

    def purge(self, now: float) -> None:
        """Forget ended blocks and failures that left the window."""
        for key, until in list(self._blocked_until.items()):
            if now >= until:
                del self._blocked_until[key]
        for key, failures in list(self._failures.items()):
            while failures and failures[0] <= now - self.window:
                failures.popleft()
            if not failures:
                del self._failures[key]

    def _evict(self) -> None:
        while len(self._failures) > self._max_sources:
            self._failures.popitem(last=False)
        if len(self._blocked_until) > self._max_sources:
            # Keep the blocks that end last; the others are the oldest and end soonest anyway.
            keep = sorted(self._blocked_until.items(), key=lambda item: item[1])[-self._max_sources :]
            self._blocked_until = dict(keep)
