"""RFC 3261 §12 dialogs: creation as UAS and UAC, in-dialog requests, CSeq checks, target refresh.

Theory of operation
-------------------
A :class:`Dialog` is plain state (§12: Call-ID, local and remote tags, local and remote URIs, remote target,
route set, local and remote CSeq, secure flag) plus the rules that use it:

* :meth:`Dialog.create_uas` builds it from an INVITE and the 1xx/2xx we send (§12.1.1): route set from the
  request's Record-Route in order, remote target from its Contact.
* :meth:`Dialog.create_uac` builds it from our INVITE and a received 1xx (with To tag: early) or 2xx
  (§12.1.2): route set from the response's Record-Route *reversed*.
* :meth:`Dialog.confirm` moves an early dialog to confirmed on a 2xx (§13.2.2.4: route set recomputed).
* :meth:`Dialog.create_request` builds in-dialog requests (§12.2.1.1), loose and strict routing included;
  ``cseq=`` overrides the number (the ACK for a 2xx reuses the INVITE's, §13.2.2.4).
* :meth:`Dialog.check_request` applies the §12.2.2 remote CSeq rule (lower -> 500).
* :meth:`Dialog.refresh_target` replaces the remote target from a Contact (§12.2: target refresh; we apply
  it when the re-INVITE succeeds, RFC 6141 §3.2/§3.3).

The dialog does no I/O and keeps no timers; the endpoint owns those.
"""
from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from mediagw.errors import LocalError, SipProtocolError
from mediagw.sip.grammar import NameAddr, SipUri, parse_name_addr
from mediagw.sip.message import SipRequest, SipResponse

logger = logging.getLogger(__name__)

MAX_CSEQ = 2**31 - 1  # RFC 3261 §8.1.1.5: CSeq numbers stay below 2**31
TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})  # §12.2, RFC 6665


class DialogState(enum.Enum):
    """RFC 3261 §12: a dialog is early (from a provisional response) or confirmed (from a 2xx)."""

    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass(frozen=True, slots=True)
class DialogId:
    """The dialog identifier of RFC 3261 §12: Call-ID, local tag, remote tag."""

    call_id: str
    """The Call-ID shared by every message of the dialog."""
    local_tag: str
    """Our tag (From of our requests, To of theirs)."""
    remote_tag: str
    """The peer's tag."""


def _strip_tag(header_value: str) -> str:
    """A From/To value without its tag parameter (the tags are kept separately)."""
    addr = parse_name_addr(header_value)
    params = {name: value for name, value in addr.params.items() if name != "tag"}
    return str(NameAddr(uri=addr.uri, display_name=addr.display_name, params=params))


def _with_tag(header_value: str, tag: str | None) -> str:
    return header_value if tag is None else f"{header_value};tag={tag}"


def _is_loose(route: str) -> bool:
    """True when a Route/Record-Route entry carries ``lr`` (RFC 3261 §16.12.1.1, §19.1.1)."""
    try:
        return "lr" in {k.lower() for k in parse_name_addr(route).uri.params}
    except SipProtocolError:
        return True


def _first_contact(message: SipRequest | SipResponse) -> SipUri | None:
    contacts = message.contacts
    return contacts[0].uri if contacts else None


class Dialog:
    """State of one RFC 3261 dialog (§12) and the rules that use it."""

    def __init__(
        self,
        *,
        call_id: str,
        local_tag: str,
        remote_tag: str,
        local_party: str,
        remote_party: str,
        remote_target: SipUri,
        route_set: Sequence[str],
        local_cseq: int | None,
        remote_cseq: int | None,
        secure: bool = False,
        state: DialogState = DialogState.CONFIRMED,
        initial_cseq: int = 1,
    ) -> None:
        self.call_id = call_id
        """Call-ID of the dialog."""
        self.local_tag = local_tag
        """Our tag."""
        self.remote_tag = remote_tag
        """The peer's tag."""
        self.local_party = local_party
        """Our From/To header value without the tag (local URI with its display name, §12.1)."""
        self.remote_party = remote_party
        """The peer's From/To header value without the tag (remote URI, §12.1)."""
        self.remote_target = remote_target
        """Where in-dialog requests go: the peer's Contact URI (§12.1.1 / §12.1.2)."""
        self.route_set: list[str] = list(route_set)
        """Route set, in the order Route headers of our requests carry it (§12.1)."""
        self.local_cseq = local_cseq
        """The last CSeq number we used, None while empty (UAS side, §12.1.1)."""
        self.remote_cseq = remote_cseq
        """The highest CSeq number the peer used, None while empty (UAC side, §12.1.2)."""
        self.secure = secure
        """True for a dialog created by a sips Request-URI over TLS (§12.1.1)."""
        self.state = state
        """EARLY, CONFIRMED or TERMINATED."""
        self.initial_cseq = initial_cseq
        """The first local CSeq number we use when ``local_cseq`` is empty."""

    def __repr__(self) -> str:
        return f"<Dialog {self.call_id} local={self.local_tag} remote={self.remote_tag} {self.state.name}>"

    # -- creation -----------------------------------------------------------------------------------------

    @classmethod
    def create_uas(cls, request: SipRequest, response: SipResponse, *, transport: str = "udp") -> Dialog:
        """The dialog we (UAS) create by answering ``request`` with ``response`` (1xx with tag or 2xx, §12.1.1).

        Raises SipProtocolError when the request lacks what a dialog needs (Contact, From tag) and LocalError
        when ``response`` carries no To tag (our bug: §8.2.6.2 requires one).
        """
        local_tag = response.to_tag
        if local_tag is None:
            raise LocalError("a dialog-creating response needs a To tag")
        remote_tag = request.from_tag
        if remote_tag is None:
            # §12.1.1 allows an empty remote tag for RFC 2543 peers; we keep "" so that lookups still work.
            remote_tag = ""
        target = _first_contact(request)
        if target is None:
            raise SipProtocolError("Missing Contact in a dialog-creating request")
        from_value = request.headers.get("From")
        to_value = request.headers.get("To")
        if from_value is None or to_value is None:
            raise SipProtocolError("Missing From or To")
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_party=_strip_tag(to_value),
            remote_party=_strip_tag(from_value),
            remote_target=target,
            route_set=request.headers.get_all("Record-Route"),
            local_cseq=None,
            remote_cseq=request.cseq[0],
            secure=request.uri.scheme == "sips" and transport.lower() == "tls",
            state=DialogState.CONFIRMED if 200 <= response.status_code < 300 else DialogState.EARLY,
        )

    @classmethod
    def create_uac(cls, request: SipRequest, response: SipResponse, *, transport: str = "udp") -> Dialog:
        """The dialog our ``request`` forms with a received 1xx (with To tag) or 2xx ``response`` (§12.1.2).

        Raises SipProtocolError when the response lacks a To tag or a Contact (a 2xx to INVITE must carry
        one, §13.3.1.4); for an early dialog without Contact the Request-URI stands in.
        """
        remote_tag = response.to_tag
        if remote_tag is None:
            raise SipProtocolError("Missing To tag in a dialog-creating response")
        local_tag = request.from_tag
        if local_tag is None:
            raise LocalError("our dialog-creating request has no From tag")
        target = _first_contact(response)
        if target is None:
            if 200 <= response.status_code < 300:
                raise SipProtocolError("Missing Contact in a 2xx to INVITE")
            target = request.uri
        from_value = request.headers.get("From")
        to_value = response.headers.get("To")
        if from_value is None or to_value is None:
            raise SipProtocolError("Missing From or To")
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_party=_strip_tag(from_value),
            remote_party=_strip_tag(to_value),
            remote_target=target,
            route_set=list(reversed(response.headers.get_all("Record-Route"))),
            local_cseq=request.cseq[0],
            remote_cseq=None,
            secure=request.uri.scheme == "sips" and transport.lower() == "tls",
            state=DialogState.CONFIRMED if 200 <= response.status_code < 300 else DialogState.EARLY,
        )

    # -- properties ---------------------------------------------------------------------------------------

    @property
    def id(self) -> DialogId:
        """The §12 dialog identifier."""
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    @property
    def local_uri(self) -> NameAddr:
        """Our From/To, parsed (without tag)."""
        return parse_name_addr(self.local_party)

    @property
    def remote_uri(self) -> NameAddr:
        """The peer's From/To, parsed (without tag)."""
        return parse_name_addr(self.remote_party)

    @property
    def next_hop(self) -> SipUri:
        """The URI the next in-dialog request is sent towards (first route, else the remote target)."""
        if self.route_set:
            return parse_name_addr(self.route_set[0]).uri
        return self.remote_target

    # -- updates ------------------------------------------------------------------------------------------

    def confirm(self, response: SipResponse) -> None:
        """A 2xx confirms an early UAC dialog: route set and remote target recomputed (§13.2.2.4)."""
        if self.state is DialogState.TERMINATED:
            raise LocalError("cannot confirm a terminated dialog")
        self.state = DialogState.CONFIRMED
        self.route_set = list(reversed(response.headers.get_all("Record-Route")))
        target = _first_contact(response)
        if target is not None:
            self.remote_target = target

    def refresh_target(self, message: SipRequest | SipResponse) -> None:
        """Replace the remote target with the message's Contact, if any (§12.2.1.2, §12.2.2)."""
        target = _first_contact(message)
        if target is not None:
            self.remote_target = target

    def check_request(self, request: SipRequest) -> int | None:
        """Apply §12.2.2 to an incoming in-dialog request: None when in order, else the status (500).

        ACK and CANCEL carry the CSeq number of the request they belong to and are not checked.
        """
        if request.method in ("ACK", "CANCEL"):
            return None
        number = request.cseq[0]
        if self.remote_cseq is not None and number < self.remote_cseq:
            return 500
        self.remote_cseq = number
        return None

    def next_cseq(self) -> int:
        """Advance and return the local CSeq number (§12.2.1.1: incremented by one per request)."""
        self.local_cseq = self.initial_cseq if self.local_cseq is None else self.local_cseq + 1
        if self.local_cseq > MAX_CSEQ:
            raise LocalError("local CSeq exhausted")
        return self.local_cseq

    def terminate(self) -> None:
        """Mark the dialog terminated (BYE, failed request, §12.3)."""
        self.state = DialogState.TERMINATED

    # -- requests -----------------------------------------------------------------------------------------

    def create_request(
        self,
        method: str,
        *,
        via: str,
        contact: str | None = None,
        cseq: int | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
        max_forwards: int = 70,
    ) -> SipRequest:
        """Build an in-dialog request (§12.2.1.1).

        ``via`` is the full Via value (with a fresh branch, except for CANCEL). ``cseq`` overrides the
        number without advancing the local CSeq (the ACK for a 2xx uses the INVITE's, §13.2.2.4);
        otherwise the local CSeq is incremented. ``contact`` is required for target refresh requests
        (§12.2.1.1, §8.1.1.8).
        """
        if self.state is DialogState.TERMINATED and method not in ("ACK", "BYE"):
            raise LocalError(f"cannot send {method} in a terminated dialog")
        if method in TARGET_REFRESH_METHODS and contact is None:
            raise LocalError(f"{method} in a dialog needs a Contact (RFC 3261 §12.2.1.1)")
        if cseq is None:
            if method == "ACK":
                raise LocalError("an ACK reuses the CSeq number of its INVITE: pass cseq=")
            number = self.next_cseq()
        else:
            number = cseq
        route_headers: list[tuple[str, str]] = []
        target = str(self.remote_target)
        if not self.route_set:
            request_uri = target
        elif _is_loose(self.route_set[0]):
            request_uri = target
            route_headers = [("Route", route) for route in self.route_set]
        else:
            # Strict routing (§12.2.1.1): first route becomes the Request-URI (header components stripped,
            # §19.1.1: not allowed there), the remote target goes last in the Route set.
            request_uri = str(parse_name_addr(self.route_set[0]).uri).split("?", 1)[0]
            route_headers = [("Route", route) for route in self.route_set[1:]]
            route_headers.append(("Route", f"<{target}>"))
        return SipRequest.new(
            method,
            request_uri,
            via=via,
            from_=_with_tag(self.local_party, self.local_tag),
            to=_with_tag(self.remote_party, self.remote_tag or None),
            call_id=self.call_id,
            cseq=number,
            contact=contact,
            max_forwards=max_forwards,
            headers=(*route_headers, *headers),
            body=body,
            content_type=content_type,
        )
