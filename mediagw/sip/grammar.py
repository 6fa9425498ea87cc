"""RFC 3261 §25 grammar pieces: URIs, name-addr, Via, parameters, comma lists (sans-I/O, pure functions).

Theory of operation
-------------------
Header values reach this module already unfolded (the CRLF of every folded line removed, so the leading
whitespace of the continuation stands for the fold, RFC 3261 §7.3.1). Every parser here is a hand-written
scanner over ``str`` (bytes are decoded with ``surrogateescape`` upstream, so any octet survives); there are
no backtracking regular expressions, so the cost is linear in the input.

Representation choices:

* ``SipUri.user`` / ``.password`` / parameter and header names and values are percent-decoded once
  (RFC 3261 §19.1.4, never recursively: ``v%61lue%25%34%31`` is ``value%41``). ``str(uri)`` re-escapes.
* IPv6 references keep no brackets in ``.host`` (``"2001:db8::1"``); ``str()`` puts them back.
* Parameter names are lower-cased (they compare case-insensitively, §7.3.1); values keep their case and
  quoted values keep their quotes. A parameter without a value maps to ``None``.
* A URI whose scheme is neither sip, sips nor tel is kept as an absolute URI (``.opaque`` holds what follows
  the colon): answering 416 is the endpoint's decision, not the parser's (RFC 3261 §8.2.2.1).

Every failure raises :class:`mediagw.errors.SipProtocolError` (400) with a message naming the construct.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from mediagw.errors import SipProtocolError

__all__ = [
    "TOKEN_CHARS",
    "NameAddr",
    "SipUri",
    "Via",
    "is_token",
    "parse_name_addr",
    "parse_params",
    "parse_uri",
    "parse_via",
    "quote",
    "split_commas",
    "unquote",
]

_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
TOKEN_CHARS = _ALNUM | frozenset("-.!%*_+`'~")
"""RFC 3261 §25.1 ``token`` characters."""
_MARK = frozenset("-_.!~*'()")
_UNRESERVED = _ALNUM | _MARK  # RFC 3261 §25.1 unreserved
_USER_OK = _UNRESERVED | frozenset("&=+$,;?/")  # unreserved / user-unreserved, RFC 3261 §25.1
_PASSWORD_OK = _UNRESERVED | frozenset("&=+$,")  # RFC 3261 §25.1 password
_PARAM_OK = _UNRESERVED | frozenset("[]/:&+$")  # paramchar = param-unreserved / unreserved
_HEADER_OK = _UNRESERVED | frozenset("[]/?:+$")  # hnv-unreserved / unreserved
_HOST_OK = _ALNUM | frozenset("-._")  # hostname / IPv4address (underscore tolerated, seen in the wild)
_SCHEME_OK = _ALNUM | frozenset("+-.")  # RFC 3986 §3.1
_TEL_OK = frozenset("0123456789abcdefABCDEF*#-.()+")  # RFC 3966 §3 digits and visual separators
_HEX = frozenset("0123456789abcdefABCDEF")
_WS = " \t"
# characters that never appear unescaped in a URI (RFC 3261 §25.1 uric, RFC 3986 §2): controls, space,
# delimiters that frame URIs in headers, non-ASCII. One character class, so the search is linear.
_URI_BAD_RE = re.compile(r'[\x00-\x20<>"{}|\\^`\x7f-\U0010ffff]')
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")


def _err(message: str) -> SipProtocolError:
    return SipProtocolError(message)


def is_token(text: str) -> bool:
    """True when ``text`` is a non-empty RFC 3261 ``token``."""
    return _TOKEN_RE.fullmatch(text) is not None


def _is_digits(text: str) -> bool:
    return bool(text) and text.isascii() and text.isdigit()


def _skip_ws(text: str, i: int) -> int:
    n = len(text)
    while i < n and text[i] in _WS:
        i += 1
    return i


def _percent_decode(text: str, what: str) -> str:
    """Decode %HH escapes once (RFC 3261 §19.1.2); a stray ``%`` is an error."""
    if "%" not in text:
        return text
    out = bytearray()
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "%":
            hh = text[i + 1:i + 3]
            if len(hh) != 2 or hh[0] not in _HEX or hh[1] not in _HEX:
                raise _err(f"invalid %-escape in {what}")
            out.append(int(hh, 16))
            i += 3
        else:
            out += c.encode("utf-8", "surrogateescape")
            i += 1
    return out.decode("utf-8", "surrogateescape")


def _percent_encode(text: str, allowed: frozenset[str]) -> str:
    if all(c in allowed for c in text):
        return text
    out: list[str] = []
    for c in text:
        if c in allowed:
            out.append(c)
        else:
            out.extend(f"%{b:02X}" for b in c.encode("utf-8", "surrogateescape"))
    return "".join(out)


def _check_chars(text: str, allowed: frozenset[str], what: str) -> None:
    """Every character must be allowed or ``%`` (escapes are checked when decoded)."""
    if not allowed.issuperset(text.replace("%", "")):
        bad = next(c for c in text if c not in allowed and c != "%")
        raise _err(f"invalid character {bad!r} in {what}")


def unquote(text: str) -> str:
    """Remove the quotes of a quoted-string and resolve its quoted-pairs (RFC 3261 §25.1)."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        end, value = _scan_quoted(text, 0)
        if end != len(text):
            raise _err("text after closing quote")
        return value
    return text


def quote(text: str) -> str:
    """Quote ``text`` as an RFC 3261 quoted-string, escaping ``"`` and ``\\``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _scan_quoted(text: str, i: int) -> tuple[int, str]:
    """Scan a quoted-string starting at ``text[i] == '"'``; return (index after it, unescaped value)."""
    n = len(text)
    j = i + 1
    out: list[str] = []
    while j < n:
        c = text[j]
        if c == "\\":
            if j + 1 >= n:
                raise _err("unterminated quoted string")
            nxt = text[j + 1]
            if nxt in "\r\n":  # quoted-pair excludes CR and LF, RFC 3261 §25.1
                raise _err("invalid quoted-pair")
            out.append(nxt)
            j += 2
            continue
        if c == '"':
            return j + 1, "".join(out)
        if c in "\r\n":
            raise _err("line break inside quoted string")
        out.append(c)
        j += 1
    raise _err("unterminated quoted string")


def split_commas(value: str) -> list[str]:
    """Split a header value at top-level commas (not inside quotes or ``<>``); parts are stripped."""
    if "," not in value:
        return [value.strip(" \t")]
    parts: list[str] = []
    start = 0
    i, n = 0, len(value)
    depth = 0
    while i < n:
        c = value[i]
        if c == '"':
            j = i + 1
            while j < n and value[j] != '"':
                j += 2 if value[j] == "\\" else 1
            i = j + 1
            continue
        if c == "<":
            depth += 1
        elif c == ">" and depth:
            depth -= 1
        elif c == "," and not depth:
            parts.append(value[start:i].strip(" \t"))
            start = i + 1
        i += 1
    parts.append(value[start:].strip(" \t"))
    return parts


def parse_params(text: str, what: str = "header") -> dict[str, str | None]:
    """Parse ``*( SEMI generic-param )`` (RFC 3261 §25.1) with optional LWS; names are lower-cased."""
    params: dict[str, str | None] = {}
    i, n = 0, len(text)
    while True:
        i = _skip_ws(text, i)
        if i >= n:
            return params
        if text[i] != ";":
            raise _err(f"expected ';' before parameter in {what}")
        i = _skip_ws(text, i + 1)
        start = i
        while i < n and text[i] in TOKEN_CHARS:
            i += 1
        name = text[start:i]
        if not name:
            raise _err(f"empty parameter in {what}")
        i = _skip_ws(text, i)
        value: str | None = None
        if i < n and text[i] == "=":
            i = _skip_ws(text, i + 1)
            if i < n and text[i] == '"':
                end, _ = _scan_quoted(text, i)
                value = text[i:end]
                i = end
            else:
                start = i
                while i < n and (text[i] in TOKEN_CHARS or text[i] in ":[]"):
                    i += 1
                value = text[start:i]
                if not value:
                    raise _err(f"parameter {name!r} has an empty value in {what}")
        params[name.lower()] = value


def _params_str(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def _parse_host(text: str, what: str) -> tuple[str, int | None]:
    """Parse ``host [":" port]`` (RFC 3261 §25.1 hostport); IPv6 references lose their brackets."""
    if not text:
        raise _err(f"missing host in {what}")
    if text[0] == "[":
        end = text.find("]")
        if end < 0:
            raise _err(f"unterminated IPv6 reference in {what}")
        host = text[1:end]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _err(f"invalid IPv6 reference in {what}") from None
        rest = text[end + 1:]
    else:
        colon = text.find(":")
        host, rest = (text, "") if colon < 0 else (text[:colon], text[colon:])
        if not host or not all(c in _HOST_OK for c in host):
            raise _err(f"invalid host {host!r} in {what}")
    port: int | None = None
    if rest:
        if rest[0] != ":" or not _is_digits(rest[1:]) or len(rest) > 6:
            raise _err(f"invalid port in {what}")
        port = int(rest[1:])
        if port > 65535:
            raise _err(f"port out of range in {what}")
    return host, port


def _host_str(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@dataclass(eq=True)
class SipUri:
    """A SIP, SIPS or TEL URI (RFC 3261 §19.1, RFC 3966), or another absolute URI kept opaque."""

    scheme: str
    user: str = ""
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    opaque: str = ""
    """What follows ``scheme:`` for a scheme this parser does not model (RFC 3986 absolute URI)."""

    @property
    def is_sip(self) -> bool:
        """True for sip: and sips: URIs."""
        return self.scheme in ("sip", "sips")

    @property
    def transport(self) -> str | None:
        """The ``transport`` URI parameter, lower-cased (RFC 3261 §19.1.1)."""
        value = self.params.get("transport")
        return value.lower() if value else None

    @property
    def lr(self) -> bool:
        """True when the URI carries the ``lr`` parameter (RFC 3261 §19.1.1, loose routing)."""
        return "lr" in self.params

    @property
    def host_port(self) -> str:
        """``host[:port]`` as it would be written."""
        return _host_str(self.host) + (f":{self.port}" if self.port is not None else "")

    def __str__(self) -> str:
        if self.scheme in ("sip", "sips"):
            out = [self.scheme, ":"]
            if self.user or self.password is not None:
                out.append(_percent_encode(self.user, _USER_OK - {"%"}))
                if self.password is not None:
                    out.append(":" + _percent_encode(self.password, _PASSWORD_OK))
                out.append("@")
            out.append(self.host_port)
            for k, v in self.params.items():
                out.append(";" + _percent_encode(k, _PARAM_OK))
                if v is not None:
                    out.append("=" + _percent_encode(v, _PARAM_OK))
            if self.headers:
                out.append("?" + "&".join(
                    f"{_percent_encode(k, _HEADER_OK)}={_percent_encode(v, _HEADER_OK)}"
                    for k, v in self.headers.items()))
            return "".join(out)
        if self.scheme == "tel":
            return "tel:" + _percent_encode(self.user, _TEL_OK | _UNRESERVED) + _params_str(self.params)
        return f"{self.scheme}:{self.opaque}" if self.scheme else self.opaque


def parse_uri(text: str) -> SipUri:
    """Parse a SIP/SIPS URI (RFC 3261 §19.1), a TEL URI (RFC 3966) or keep another absolute URI opaque."""
    colon = text.find(":")
    if colon <= 0:
        raise _err(f"URI without scheme: {text[:60]!r}")
    scheme = text[:colon]
    if not scheme[0].isascii() or not scheme[0].isalpha() or not all(c in _SCHEME_OK for c in scheme):
        raise _err(f"invalid URI scheme {scheme[:30]!r}")
    scheme = scheme.lower()
    rest = text[colon + 1:]
    if not rest:
        raise _err("empty URI after scheme")
    bad = _URI_BAD_RE.search(rest)
    if bad is not None:
        raise _err(f"invalid character {bad.group()!r} in URI")
    if scheme in ("sip", "sips"):
        return _parse_sip_uri(scheme, rest)
    if scheme == "tel":
        return _parse_tel_uri(rest)
    return SipUri(scheme=scheme, opaque=rest)


def _parse_sip_uri(scheme: str, rest: str) -> SipUri:
    at = rest.find("@")
    user, password = "", None
    if at >= 0:
        if "@" in rest[at + 1:]:
            raise _err("unescaped '@' in SIP URI")
        userinfo, rest = rest[:at], rest[at + 1:]
        pcolon = userinfo.find(":")
        raw_user, raw_pw = (userinfo, None) if pcolon < 0 else (userinfo[:pcolon], userinfo[pcolon + 1:])
        if not raw_user:
            raise _err("empty user part in SIP URI")
        _check_chars(raw_user, _USER_OK, "URI user part")
        user = _percent_decode(raw_user, "URI user part")
        if raw_pw is not None:
            _check_chars(raw_pw, _PASSWORD_OK, "URI password")
            password = _percent_decode(raw_pw, "URI password")
    # hostport ends at the first ';' (uri-parameters) or '?' (headers), RFC 3261 §25.1
    end = len(rest)
    if rest.startswith("["):
        close = rest.find("]")
        search_from = max(close, 0)
    else:
        search_from = 0
    for sep in ";?":
        k = rest.find(sep, search_from)
        if 0 <= k < end:
            end = k
    host, port = _parse_host(rest[:end], "SIP URI")
    rest = rest[end:]
    params: dict[str, str | None] = {}
    headers: dict[str, str] = {}
    qmark = rest.find("?")
    ptext, htext = (rest, "") if qmark < 0 else (rest[:qmark], rest[qmark + 1:])
    if ptext:
        for item in ptext[1:].split(";"):
            if not item:
                raise _err("empty URI parameter")
            eq = item.find("=")
            raw_name, raw_value = (item, None) if eq < 0 else (item[:eq], item[eq + 1:])
            _check_chars(raw_name, _PARAM_OK, "URI parameter")
            name = _percent_decode(raw_name, "URI parameter").lower()
            if not name:
                raise _err("empty URI parameter name")
            value = None
            if raw_value is not None:
                if not raw_value:
                    raise _err(f"URI parameter {name!r} has an empty value")
                _check_chars(raw_value, _PARAM_OK, "URI parameter")
                value = _percent_decode(raw_value, "URI parameter")
            params[name] = value
    if qmark >= 0:
        for item in htext.split("&"):
            eq = item.find("=")
            if eq <= 0:
                raise _err("URI header without '='")
            _check_chars(item[:eq], _HEADER_OK, "URI header")
            _check_chars(item[eq + 1:], _HEADER_OK, "URI header")
            headers[_percent_decode(item[:eq], "URI header")] = _percent_decode(item[eq + 1:], "URI header")
    return SipUri(scheme=scheme, user=user, password=password, host=host, port=port, params=params,
                  headers=headers)


def _parse_tel_uri(rest: str) -> SipUri:
    """RFC 3966 §3: telephone-subscriber = global-number / local-number, then ;par."""
    semi = rest.find(";")
    number, ptext = (rest, "") if semi < 0 else (rest[:semi], rest[semi:])
    number_dec = _percent_decode(number, "tel URI number")
    body = number_dec.removeprefix("+")
    if not body or not all(c in _TEL_OK and c != "+" for c in body):
        raise _err(f"invalid tel URI number {number[:40]!r}")
    params: dict[str, str | None] = {}
    if ptext:
        for item in ptext[1:].split(";"):
            eq = item.find("=")
            raw_name, raw_value = (item, None) if eq < 0 else (item[:eq], item[eq + 1:])
            if not raw_name or not all(c in _ALNUM or c == "-" for c in raw_name):
                raise _err("invalid tel URI parameter")
            if raw_value is not None and not raw_value:
                raise _err("empty tel URI parameter value")
            params[raw_name.lower()] = (None if raw_value is None
                                        else _percent_decode(raw_value, "tel URI parameter"))
    return SipUri(scheme="tel", user=number_dec, params=params)


@dataclass(eq=True)
class NameAddr:
    """A From/To/Contact/Route value: optional display name, URI, header parameters (RFC 3261 §20.10)."""

    uri: SipUri
    display_name: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (RFC 3261 §19.3), or None."""
        return self.params.get("tag")

    def __str__(self) -> str:
        name = f"{quote(self.display_name)} " if self.display_name else ""
        return f"{name}<{self.uri}>{_params_str(self.params)}"


def _display_name_ok(text: str) -> bool:
    # display-name = *(token LWS) / quoted-string (RFC 3261 §25.1); non-ASCII UTF-8 is tolerated unquoted
    return all(c in TOKEN_CHARS or c in _WS or ord(c) >= 0x80 for c in text)


def parse_name_addr(text: str) -> NameAddr:
    """Parse ``( name-addr / addr-spec ) *( SEMI param )`` as in From, To, Contact (RFC 3261 §20.10)."""
    s = text.strip(" \t")
    if not s:
        raise _err("empty address")
    display: str | None = None
    if s[0] == '"':
        end, display = _scan_quoted(s, 0)
        rest = s[end:].lstrip(" \t")
        if not rest.startswith("<"):
            raise _err("quoted display name not followed by '<'")
    else:
        lt = s.find("<")
        if lt >= 0:
            raw_display = s[:lt].strip(" \t")
            if not _display_name_ok(raw_display):
                raise _err(f"display name {raw_display[:40]!r} must be quoted")
            display = " ".join(raw_display.split()) or None
            rest = s[lt:]
        else:
            # addr-spec form: the URI ends at the first ';', which starts header parameters; a URI
            # with '?' or ',' would need the name-addr form (RFC 3261 §20.10)
            semi = s.find(";")
            uri_text, ptext = (s, "") if semi < 0 else (s[:semi].rstrip(" \t"), s[semi:])
            if "?" in uri_text or "," in uri_text:
                raise _err("URI with headers or commas must be enclosed in '<>'")
            uri = parse_uri(uri_text)
            return NameAddr(uri=uri, display_name=None, params=parse_params(ptext, "address"))
    gt = rest.find(">")
    if gt < 0:
        raise _err("'<' without matching '>'")
    uri = parse_uri(rest[1:gt])
    return NameAddr(uri=uri, display_name=display, params=parse_params(rest[gt + 1:], "address"))


@dataclass(eq=True)
class Via:
    """One Via value (RFC 3261 §20.42): sent-protocol, sent-by and via-params."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        """The ``branch`` parameter (RFC 3261 §8.1.1.7)."""
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        """The ``received`` parameter without IPv6 brackets (RFC 3261 §18.2.1, RFC 5118 §4.5)."""
        value = self.params.get("received")
        if value and value.startswith("[") and value.endswith("]"):
            return value[1:-1]
        return value

    @property
    def rport(self) -> bool | int | None:
        """RFC 3581 ``rport``: None when absent, True when present without value, else the port."""
        if "rport" not in self.params:
            return None
        value = self.params["rport"]
        if value is None:
            return True
        if not _is_digits(value) or int(value) > 65535:
            raise _err("invalid rport value in Via")
        return int(value)

    @property
    def sent_by(self) -> str:
        """``host[:port]`` as it would be written."""
        return _host_str(self.host) + (f":{self.port}" if self.port is not None else "")

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{_params_str(self.params)}"


def parse_via(text: str) -> Via:
    """Parse one via-parm (RFC 3261 §25.1): ``SIP / 2.0 / UDP host[:port] *(SEMI via-params)``."""
    n = len(text)
    parts: list[str] = []
    i = _skip_ws(text, 0)
    for k in range(3):
        start = i
        while i < n and text[i] in TOKEN_CHARS:
            i += 1
        if i == start:
            raise _err("malformed Via sent-protocol")
        parts.append(text[start:i])
        if k < 2:
            i = _skip_ws(text, i)
            if i >= n or text[i] != "/":
                raise _err("malformed Via sent-protocol")
            i = _skip_ws(text, i + 1)
    j = _skip_ws(text, i)
    if j == i or j >= n:
        raise _err("missing Via sent-by")
    i = j
    start = i
    if text[i] == "[":
        close = text.find("]", i)
        i = n if close < 0 else close + 1
    while i < n and text[i] not in _WS and text[i] != ";":
        i += 1
    hostport = text[start:i]
    # COLON = SWS ":" SWS (RFC 3261 §25.1): tolerate whitespace around the port colon
    k = _skip_ws(text, i)
    if k < n and text[k] == ":":
        m = _skip_ws(text, k + 1)
        e = m
        while e < n and text[e].isascii() and text[e].isdigit():
            e += 1
        hostport += ":" + text[m:e]
        i = e
    host, port = _parse_host(hostport, "Via")
    params = parse_params(text[i:], "Via")
    return Via(transport=parts[2].upper(), host=host, port=port, params=params,
               protocol=f"{parts[0].upper()}/{parts[1]}")
