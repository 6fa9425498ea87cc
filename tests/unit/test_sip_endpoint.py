"""SipEndpoint: the UAS/UAC core driven with raw bytes and an explicit clock, alone and as two cores
wired in memory (``client_and_server``)."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from mediagw.errors import LocalError
from mediagw.sip.endpoint import (
    CallCancelled,
    CallEstablished,
    CallTerminated,
    EndpointConfig,
    IncomingCallReceived,
    InfoReceived,
    LegState,
    OutgoingCallAnswered,
    OutgoingCallFailed,
    OutgoingCallProgressed,
    ReinviteAnswered,
    ReinviteReceived,
    SipEndpoint,
)
from mediagw.sip.message import SipRequest, SipResponse, build_response, parse_message

GW = ("10.0.0.2", 5060)
PHONE = ("10.0.0.9", 5060)
NAT = ("203.0.113.5", 40000)
OFFER = b"v=0\r\no=- 1 1 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
ANSWER = b"v=0\r\no=- 2 2 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n"
HOLD = OFFER.replace(b"RTP/AVP 0\r\n", b"RTP/AVP 0\r\na=sendonly\r\n")


def raw(
    method: str = "INVITE",
    *,
    branch: str = "z9hG4bK-inv1",
    call_id: str = "call-1@10.0.0.9",
    from_tag: str = "caller-tag",
    to_tag: str | None = None,
    cseq: int = 1,
    cseq_method: str | None = None,
    uri: str = "sip:queue@10.0.0.2",
    via: str = "10.0.0.9:5060",
    via_params: str = ";rport",
    max_forwards: int | None = 70,
    extra: str = "",
    body: bytes | None = None,
    content_type: str = "application/sdp",
) -> bytes:
    """A request as a phone would send it."""
    if body is None:
        body = OFFER if method == "INVITE" else b""
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP {via};branch={branch}{via_params}",
    ]
    if max_forwards is not None:
        lines.append(f"Max-Forwards: {max_forwards}")
    lines += [
        f"From: \"Caller\" <sip:caller@example.com>;tag={from_tag}",
        "To: <sip:queue@example.com>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
        "Contact: <sip:caller@10.0.0.9:5060>",
    ]
    if body:
        lines.append(f"Content-Type: {content_type}")
    head = "\r\n".join(lines) + "\r\n" + extra + f"Content-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


@dataclass
class Registry:
    """A registrar stand-in recording what it was asked."""

    calls: list[tuple[str, tuple[str, int]]] = field(default_factory=list)

    def handle_register(self, request: SipRequest, source: tuple[str, int], transport: str, now: float) -> SipResponse:
        self.calls.append((request.method, source))
        return build_response(request, 200, headers=[("Contact", "<sip:agent@10.0.0.9>;expires=60")])

    def is_registered_source(self, source: tuple[str, int], now: float) -> str | None:
        return "agent7" if source == PHONE else None


class Uas:
    """One endpoint fed raw bytes at an explicit time; collects what it sends."""

    def __init__(self, **kwargs: object) -> None:
        config = EndpointConfig(local_addresses={"udp": GW, "tcp": GW}, user_agent="mediagw-test",
                                supported=("replaces",))
        self.ep = SipEndpoint(config, **kwargs)  # type: ignore[arg-type]
        self.now = 0.0

    def feed(self, data: bytes, source: tuple[str, int] = PHONE, transport: str = "udp") -> list[SipResponse | SipRequest]:
        self.ep.receive_data(data, source, transport, self.now, GW)
        return self.drain()

    def drain_raw(self) -> list[tuple[SipRequest | SipResponse, tuple[str, int], str]]:
        return [(parse_message(d), dest, tr) for d, dest, tr in self.ep.datagrams_to_send()]

    def drain(self) -> list[SipResponse | SipRequest]:
        return [m for m, _, _ in self.drain_raw()]

    def events(self) -> list[object]:
        out = []
        while (event := self.ep.next_event()) is not None:
            out.append(event)
        return out

    def advance(self, until: float) -> list[tuple[float, SipRequest | SipResponse]]:
        """Fire every timer up to ``until`` at its exact deadline."""
        log: list[tuple[float, SipRequest | SipResponse]] = []
        while (deadline := self.ep.get_timer()) is not None and deadline <= until:
            self.now = deadline
            self.ep.handle_timer(deadline)
            log.extend((deadline, m) for m in self.drain())
        self.now = until
        return log

    def incoming_call(self, **kwargs: object) -> tuple[int, list[SipResponse | SipRequest]]:
        out = self.feed(raw(**kwargs))  # type: ignore[arg-type]
        [event] = self.events()
        assert isinstance(event, IncomingCallReceived)
        return event.call_handle, out

    def established_call(self) -> tuple[int, SipResponse]:
        handle, _ = self.incoming_call()
        self.ep.answer(handle, ANSWER, now=self.now)
        [ok] = self.drain()
        assert isinstance(ok, SipResponse)
        self.feed(raw("ACK", branch="z9hG4bK-ack1", to_tag=ok.to_tag, body=b""))
        [established] = self.events()
        assert isinstance(established, CallEstablished)
        return handle, ok


def statuses(messages: list[SipRequest | SipResponse]) -> list[int]:
    return [m.status_code for m in messages if isinstance(m, SipResponse)]


def only_response(messages: list[SipRequest | SipResponse]) -> SipResponse:
    finals = [m for m in messages if isinstance(m, SipResponse) and m.status_code != 100]
    assert len(finals) == 1, messages
    return finals[0]


# ============================================================================== UAS: basic call


def test_invite_gets_trying_at_once_then_event() -> None:
    uas = Uas(registrar=Registry())
    out = uas.feed(raw())
    assert statuses(out) == [100]
    assert out[0].to_tag is None  # type: ignore[union-attr]
    [event] = uas.events()
    assert isinstance(event, IncomingCallReceived)
    assert event.source == PHONE and event.transport == "udp" and event.registered_user == "agent7"
    assert event.request.method == "INVITE" and event.request.body == OFFER
    assert uas.ep.call_state(event.call_handle) is LegState.INCOMING


def test_retransmitted_invite_is_absorbed() -> None:
    uas = Uas()
    handle, _ = uas.incoming_call()
    assert statuses(uas.feed(raw())) == [100]  # §17.2.1: the last response again, no new event
    uas.ep.send_provisional(handle, 180, now=0.1)
    [ringing] = uas.drain()
    assert statuses(uas.feed(raw())) == [180]
    assert ringing.headers.get("Contact") == "<sip:mediagw@10.0.0.2:5060>"
    assert uas.events() == []


def test_answer_ack_established() -> None:
    uas = Uas()
    handle, _ = uas.incoming_call()
    uas.ep.send_provisional(handle, 183, body=ANSWER, now=0.0)
    [progress] = uas.drain()
    assert isinstance(progress, SipResponse) and progress.status_code == 183 and progress.body == ANSWER
    uas.ep.answer(handle, ANSWER, now=0.1)
    [ok] = uas.drain()
    assert isinstance(ok, SipResponse) and ok.status_code == 200
    assert ok.to_tag == progress.to_tag  # same dialog as the early one
    assert ok.content_type == "application/sdp" and ok.body == ANSWER
    assert ok.headers.get("Contact") == "<sip:mediagw@10.0.0.2:5060>"
    assert "INVITE" in ok.headers.get("Allow")  # type: ignore[operator]
    assert ok.headers.get("Server") == "mediagw-test"
    assert uas.ep.call_state(handle) is LegState.ANSWERED
    uas.feed(raw("ACK", branch="z9hG4bK-ack1", to_tag=ok.to_tag, body=b""))
    [event] = uas.events()
    assert isinstance(event, CallEstablished) and event.call_handle == handle
    assert uas.ep.call_state(handle) is LegState.CONFIRMED
    assert uas.advance(40.0) == []  # nothing retransmitted after the ACK


def test_2xx_retransmitted_until_ack_timeout_then_bye() -> None:
    uas = Uas()
    handle, _ = uas.incoming_call()
    uas.ep.answer(handle, ANSWER, now=0.0)
    [ok] = uas.drain()
    log = uas.advance(31.99)
    # RFC 3261 §13.3.1.4: T1, doubling to T2, until 64*T1
    assert [t for t, _ in log] == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert all(isinstance(m, SipResponse) and m.status_code == 200 for _, m in log)
    assert all(m.serialize() == ok.serialize() for _, m in log)
    assert uas.events() == []
    log = uas.advance(32.0)
    [(t, bye)] = log
    assert t == 32.0 and isinstance(bye, SipRequest) and bye.method == "BYE"
    assert str(bye.uri) == "sip:caller@10.0.0.9:5060" and bye.to_tag == "caller-tag"
    assert bye.from_tag == ok.to_tag
    assert uas.events() == [CallTerminated(handle, "ack-timeout")]


def test_ack_stops_2xx_retransmissions() -> None:
    uas = Uas()
    handle, _ = uas.incoming_call()
    uas.ep.answer(handle, ANSWER, now=0.0)
    [ok] = uas.drain()
    assert len(uas.advance(2.0)) == 2  # 0.5 and 1.5
    uas.feed(raw("ACK", branch="z9hG4bK-ack1", to_tag=ok.to_tag, body=b""))
    assert isinstance(uas.events()[0], CallEstablished)
    assert uas.advance(60.0) == []


def test_reject_uses_timer_g_until_ack() -> None:
    uas = Uas()
    handle, _ = uas.incoming_call()
    uas.ep.reject(handle, 486, now=0.0)
    [busy] = uas.drain()
    assert isinstance(busy, SipResponse) and busy.status_code == 486 and busy.to_tag
    log = uas.advance(2.0)
    assert [t for t, _ in log] == [0.5, 1.5]  # Timer G
    assert uas.feed(raw("ACK", to_tag=busy.to_tag, body=b"")) == []  # same branch: the INVITE transaction
    assert uas.advance(60.0) == []
    assert uas.ep.call_state(handle) is LegState.TERMINATED


def test_in_dialog_bye_terminates() -> None:
    uas = Uas()
    handle, ok = uas.established_call()
    out = uas.feed(raw("BYE", branch="z9hG4bK-bye1", to_tag=ok.to_tag, cseq=2))
    assert statuses(out) == [200]
    assert uas.events() == [CallTerminated(handle, "remote-bye")]
    # the dialog is gone: a new BYE (new transaction) gets 481
    out = uas.feed(raw("BYE", branch="z9hG4bK-bye2", to_tag=ok.to_tag, cseq=3))
    assert statuses(out) == [481]


def test_info_in_dialog() -> None:
    uas = Uas()
    handle, ok = uas.established_call()
    out = uas.feed(raw("INFO", branch="z9hG4bK-info1", to_tag=ok.to_tag, cseq=2, body=b"Signal=5\r\nDuration=160\r\n",
                       content_type="application/dtmf-relay"))
    assert statuses(out) == [200]
    [event] = uas.events()
    assert isinstance(event, InfoReceived) and event.call_handle == handle
    assert event.request.body.startswith(b"Signal=5")


def test_out_of_order_cseq_gets_500() -> None:
    uas = Uas()
    _, ok = uas.established_call()
    uas.feed(raw("INFO", branch="z9hG4bK-i1", to_tag=ok.to_tag, cseq=5))
    out = uas.feed(raw("INFO", branch="z9hG4bK-i2", to_tag=ok.to_tag, cseq=4))
    assert statuses(out) == [500]  # §12.2.2


def test_reinvite_hold_answered() -> None:
    uas = Uas()
    handle, ok = uas.established_call()
    hold = raw("INVITE", branch="z9hG4bK-re1", to_tag=ok.to_tag, cseq=2, body=HOLD,
               extra="").replace(b"Contact: <sip:caller@10.0.0.9:5060>", b"Contact: <sip:caller@10.0.0.99:5070>")
    out = uas.feed(hold)
    assert statuses(out) == [100]
    [event] = uas.events()
    assert isinstance(event, ReinviteReceived) and b"a=sendonly" in event.request.body
    # a second re-INVITE while the first is pending: 500 with Retry-After (§14.2)
    out = uas.feed(raw("INVITE", branch="z9hG4bK-re2", to_tag=ok.to_tag, cseq=3, body=HOLD))
    busy = only_response(out)
    assert busy.status_code == 500 and busy.headers.get("Retry-After") is not None
    uas.feed(raw("ACK", branch="z9hG4bK-re2", to_tag=ok.to_tag, cseq=3, body=b""))  # ACK for the 500
    uas.now = 1.0
    recvonly = ANSWER + b"a=recvonly\r\n"
    uas.ep.answer_reinvite(handle, 200, recvonly, now=1.0)
    [re_ok] = uas.drain()
    assert isinstance(re_ok, SipResponse) and re_ok.status_code == 200 and re_ok.body == recvonly
    assert re_ok.to_tag == ok.to_tag and re_ok.cseq == (2, "INVITE")
    # 2xx to the re-INVITE is retransmitted until its ACK too
    assert [t for t, _ in uas.advance(2.0)] == [1.5]
    uas.feed(raw("ACK", branch="z9hG4bK-reack", to_tag=ok.to_tag, cseq=2, body=b""))
    assert uas.advance(50.0) == []
    assert uas.events() == []
    # target refreshed: our BYE goes to the new Contact
    uas.ep.hangup(handle, now=50.0)
    [bye] = uas.drain()
    assert isinstance(bye, SipRequest) and str(bye.uri) == "sip:caller@10.0.0.99:5070"


def test_reinvite_rejected_keeps_call() -> None:
    uas = Uas()
    handle, ok = uas.established_call()
    uas.feed(raw("INVITE", branch="z9hG4bK-re1", to_tag=ok.to_tag, cseq=2, body=HOLD))
    uas.events()
    uas.ep.answer_reinvite(handle, 488, now=0.5)
    [refused] = uas.drain()
    assert isinstance(refused, SipResponse) and refused.status_code == 488
    assert uas.ep.call_state(handle) is LegState.CONFIRMED


# ============================================================================== UAS: CANCEL


def test_cancel_gets_200_and_487() -> None:
    uas = Uas()
    handle, _ = uas.incoming_call()
    uas.ep.send_provisional(handle, 180, now=0.0)
    [ringing] = uas.drain()
    out = uas.feed(raw("CANCEL", body=b""))
    assert [(m.status_code, m.cseq[1]) for m in out] == [(200, "CANCEL"), (487, "INVITE")]  # type: ignore[union-attr]
    assert out[1].to_tag == ringing.to_tag == out[0].to_tag
    assert uas.events() == [CallCancelled(handle)]
    # the 487 is retransmitted (Timer G) until the ACK for it
    assert [t for t, _ in uas.advance(0.6)] == [0.5]
    uas.feed(raw("ACK", to_tag=ringing.to_tag, body=b""))
    assert uas.advance(60.0) == []
    # commands after the cancel lost the race: ignored, not raised
    uas.ep.answer(handle, ANSWER, now=60.0)
    assert uas.drain() == []


def test_cancel_after_answer_only_200() -> None:
    uas = Uas()
    handle, _ = uas.incoming_call()
    uas.ep.answer(handle, ANSWER, now=0.0)
    uas.drain()
    out = uas.feed(raw("CANCEL", body=b""))
    assert statuses(out) == [200]
    assert uas.events() == []


def test_cancel_for_unknown_invite_gets_481() -> None:
    uas = Uas()
    assert statuses(uas.feed(raw("CANCEL", branch="z9hG4bK-nothing", body=b""))) == [481]


def test_bye_on_early_dialog_cancels() -> None:
    uas = Uas()
    handle, _ = uas.incoming_call()
    uas.ep.send_provisional(handle, 180, now=0.0)
    [ringing] = uas.drain()
    out = uas.feed(raw("BYE", branch="z9hG4bK-ebye", to_tag=ringing.to_tag, cseq=2))
    assert sorted(statuses(out)) == [200, 487]
    assert uas.events() == [CallCancelled(handle)]


# ============================================================================== UAS: refusals


def test_merged_request_gets_482() -> None:
    uas = Uas()
    uas.incoming_call()
    # the same request forked by a proxy reaches us over another path: other branch, same From tag/Call-ID/CSeq
    out = uas.feed(raw(branch="z9hG4bK-fork2", via="10.0.0.77:5060"), source=("10.0.0.77", 5060))
    assert statuses(out) == [482]
    assert uas.events() == []


def test_max_forwards_zero_gets_483_except_options() -> None:
    uas = Uas()
    assert statuses(uas.feed(raw(max_forwards=0))) == [483]
    assert statuses(uas.feed(raw("OPTIONS", branch="z9hG4bK-o1", max_forwards=0))) == [200]
    assert uas.events() == []


def test_own_branch_in_via_is_a_loop() -> None:
    uas = Uas()
    ours = uas.ep.transactions.new_branch()
    looped = raw(extra=f"Via: SIP/2.0/UDP 10.0.0.2:5060;branch={ours}\r\n")
    assert statuses(uas.feed(looped)) == [482]


def test_unknown_dialog_gets_481() -> None:
    uas = Uas()
    assert statuses(uas.feed(raw("BYE", to_tag="nope", cseq=2))) == [481]
    assert statuses(uas.feed(raw("INFO", branch="z9hG4bK-2", to_tag="nope", cseq=3))) == [481]
    assert statuses(uas.feed(raw("INVITE", branch="z9hG4bK-3", to_tag="nope", cseq=4))) == [481]
    assert statuses(uas.feed(raw("BYE", branch="z9hG4bK-4", cseq=5))) == [481]  # BYE outside a dialog


def test_unsupported_uri_scheme_gets_416() -> None:
    uas = Uas()
    out = uas.feed(raw(uri="mailto:queue@example.com"))
    assert statuses(out) == [416]


def test_require_unknown_extension_gets_420() -> None:
    uas = Uas()
    out = uas.feed(raw(extra="Require: 100rel, replaces\r\n"))
    refused = only_response(out)
    assert refused.status_code == 420 and refused.headers.get("Unsupported") == "100rel"
    # a tag we support passes
    assert statuses(uas.feed(raw(branch="z9hG4bK-ok", call_id="c2", extra="Require: replaces\r\n"))) == [100]


def test_unknown_method_501_known_extension_405() -> None:
    uas = Uas()
    unknown = only_response(uas.feed(raw("FROBNICATE", branch="z9hG4bK-f")))
    assert unknown.status_code == 501 and "INVITE" in (unknown.headers.get("Allow") or "")
    for i, method in enumerate(("SUBSCRIBE", "PUBLISH", "MESSAGE")):
        refused = only_response(uas.feed(raw(method, branch=f"z9hG4bK-m{i}")))
        assert refused.status_code == 405 and refused.headers.get("Allow")
    # REGISTER without a registrar is not offered
    assert statuses(uas.feed(raw("REGISTER", branch="z9hG4bK-r"))) == [405]


def test_options_answered_with_capabilities() -> None:
    uas = Uas()
    ok = only_response(uas.feed(raw("OPTIONS", branch="z9hG4bK-opt")))
    assert ok.status_code == 200 and ok.to_tag
    assert ok.headers.get_all("Allow") == ["INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO"]
    assert ok.headers.get("Accept") == "application/sdp"
    assert ok.headers.get("Supported") == "replaces"


def test_non_sdp_body_gets_415() -> None:
    uas = Uas()
    refused = only_response(uas.feed(raw(body=b"<xml/>", content_type="application/xml")))
    assert refused.status_code == 415 and refused.headers.get("Accept") == "application/sdp"


def test_invite_without_contact_gets_400() -> None:
    uas = Uas()
    data = raw().replace(b"Contact: <sip:caller@10.0.0.9:5060>\r\n", b"")
    assert statuses(uas.feed(data)) == [400]


def test_draining_refuses_new_invites_with_retry_after() -> None:
    uas = Uas()
    handle, ok = uas.established_call()
    uas.ep.start_draining(retry_after=120)
    refused = only_response(uas.feed(raw(branch="z9hG4bK-new", call_id="call-2")))
    assert refused.status_code == 503 and refused.headers.get("Retry-After") == "120"
    # calls in progress still work
    assert statuses(uas.feed(raw("INFO", branch="z9hG4bK-i", to_tag=ok.to_tag, cseq=2))) == [200]
    uas.ep.stop_draining()
    assert statuses(uas.feed(raw(branch="z9hG4bK-new3", call_id="call-3"))) == [100]


def test_admission_policy_rejects() -> None:
    seen: list[tuple[tuple[str, int], str]] = []

    def policy(request: SipRequest, source: tuple[str, int], transport: str, now: float) -> SipResponse | None:
        seen.append((source, transport))
        if source[0].startswith("10."):
            return None
        return build_response(request, 403)

    uas = Uas(policy=policy)
    refused = only_response(uas.feed(raw(), source=("198.51.100.1", 5060)))
    assert refused.status_code == 403 and refused.to_tag and refused.headers.get("Server") == "mediagw-test"
    assert uas.events() == []
    uas.feed(raw(branch="z9hG4bK-2", call_id="c2"))
    assert isinstance(uas.events()[0], IncomingCallReceived)
    assert seen == [(("198.51.100.1", 5060), "udp"), (PHONE, "udp")]


def test_register_goes_to_the_registrar() -> None:
    registry = Registry()
    uas = Uas(registrar=registry)
    ok = only_response(uas.feed(raw("REGISTER", branch="z9hG4bK-reg", uri="sip:example.com")))
    assert ok.status_code == 200 and ok.to_tag
    assert registry.calls == [("REGISTER", PHONE)]
    # a retransmission is absorbed by the transaction, not seen twice by the registrar
    uas.feed(raw("REGISTER", branch="z9hG4bK-reg", uri="sip:example.com"))
    assert len(registry.calls) == 1


# ============================================================================== received / rport, malformed


def test_rport_and_received_route_the_response_through_nat() -> None:
    uas = Uas()
    uas.ep.receive_data(raw(), NAT, "udp", 0.0, GW)
    [(trying, destination, transport)] = uas.drain_raw()
    assert destination == NAT and transport == "udp"
    via = trying.top_via
    assert via.received == "203.0.113.5" and via.rport == 40000  # RFC 3581 §4
    assert via.branch == "z9hG4bK-inv1"


def test_received_without_rport_uses_via_port() -> None:
    uas = Uas()
    uas.ep.receive_data(raw(via_params=""), NAT, "udp", 0.0, GW)
    [(trying, destination, _)] = uas.drain_raw()
    assert destination == ("203.0.113.5", 5060)  # §18.2.2: received + sent-by port
    assert trying.top_via.received == "203.0.113.5" and trying.top_via.rport is None


def test_no_received_when_sent_by_matches_source() -> None:
    uas = Uas()
    uas.ep.receive_data(raw(via_params=""), PHONE, "udp", 0.0, GW)
    [(trying, destination, _)] = uas.drain_raw()
    assert destination == PHONE and "received" not in trying.top_via.params


def test_tcp_responses_go_back_on_the_connection() -> None:
    uas = Uas()
    uas.ep.receive_data(raw(via_params=""), ("10.0.0.9", 51234), "tcp", 0.0, GW)
    [(_, destination, transport)] = uas.drain_raw()
    assert destination == ("10.0.0.9", 51234) and transport == "tcp"


def test_malformed_request_gets_400_from_partial() -> None:
    uas = Uas()
    bad = raw("OPTIONS", branch="z9hG4bK-bad").replace(b"Max-Forwards: 70", b"Max-Forwards: lots")
    refused = only_response(uas.feed(bad))
    assert refused.status_code == 400 and "Max-Forwards" in refused.reason
    assert refused.call_id == "call-1@10.0.0.9"


def test_missing_mandatory_header_gets_400() -> None:
    uas = Uas()
    assert statuses(uas.feed(raw("OPTIONS", branch="z9hG4bK-nomf", max_forwards=None))) == [400]
    mismatch = raw("OPTIONS", branch="z9hG4bK-cs", cseq_method="INVITE")
    assert statuses(uas.feed(mismatch)) == [400]


@pytest.mark.parametrize(
    "garbage",
    [b"\x00\x01\x02", b"hello world\r\n\r\n", b"SIP/2.0 200\r\n\r\n", b"\r\n\r\n",
     b"INVITE sip:x SIP/2.0\r\nVia: nonsense\r\n\r\n", b"INVITE sip:a@b SIP/2.0\r\n" * 3],
)
def test_garbage_never_raises_and_is_dropped(garbage: bytes, caplog: pytest.LogCaptureFixture) -> None:
    uas = Uas()
    with caplog.at_level(logging.CRITICAL):
        uas.ep.receive_data(garbage, PHONE, "udp", 0.0, GW)
    assert uas.drain() == [] and uas.events() == []


def test_ack_for_unknown_dialog_is_dropped() -> None:
    uas = Uas()
    assert uas.feed(raw("ACK", to_tag="nope", body=b"")) == []


# ============================================================================== UAS: hangup


def test_hangup_unanswered_incoming_rejects() -> None:
    uas = Uas()
    handle, _ = uas.incoming_call()
    uas.ep.hangup(handle, now=0.0)
    assert statuses(uas.drain()) == [480]
    assert uas.ep.call_state(handle) is LegState.TERMINATED


def test_hangup_before_ack_waits_for_ack_then_byes() -> None:
    uas = Uas()
    handle, _ = uas.incoming_call()
    uas.ep.answer(handle, ANSWER, now=0.0)
    [ok] = uas.drain()
    uas.ep.hangup(handle, now=0.1)
    assert uas.drain() == []  # §15: no BYE before the ACK
    uas.now = 0.2
    out = uas.feed(raw("ACK", branch="z9hG4bK-ack", to_tag=ok.to_tag, body=b""))
    [bye] = out
    assert isinstance(bye, SipRequest) and bye.method == "BYE"
    assert isinstance(uas.events()[0], CallEstablished)
    uas.now = 0.3
    uas.feed(build_response(bye, 200).serialize())
    assert uas.events() == [CallTerminated(handle, "local-bye")]


def test_bye_timeout_reports_timeout() -> None:
    uas = Uas()
    handle, _ = uas.established_call()
    uas.ep.hangup(handle, now=1.0)
    [bye] = uas.drain()
    log = uas.advance(40.0)
    # Timer E on the BYE: T1 doubling to T2, then Timer F at 64*T1
    assert [t - 1.0 for t, _ in log] == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert all(m.serialize() == bye.serialize() for _, m in log)
    assert uas.events() == [CallTerminated(handle, "timeout")]


def test_commands_on_unknown_handles_raise() -> None:
    uas = Uas()
    with pytest.raises(LocalError):
        uas.ep.answer(42, ANSWER, now=0.0)
    handle, _ = uas.incoming_call()
    with pytest.raises(LocalError):
        uas.ep.reject(handle, 200, now=0.0)
    with pytest.raises(LocalError):
        uas.ep.send_provisional(handle, 200, now=0.0)
    with pytest.raises(LocalError):
        uas.ep.send_bye(handle, now=0.0)


# ============================================================================== two cores in memory


PHONE_EP = ("10.0.0.50", 5062)


@dataclass
class Wire:
    """Two endpoints connected by an in-memory network that can drop messages."""

    client: SipEndpoint
    server: SipEndpoint
    now: float = 0.0
    drop: list[str] = field(default_factory=list)  # start lines (prefix) to drop once each
    log: list[tuple[float, str, str]] = field(default_factory=list)  # (time, "c>s"/"s>c", start line)

    def pump(self) -> None:
        moved = True
        while moved:
            moved = False
            for src, dst, direction, src_addr, dst_addr in (
                (self.client, self.server, "c>s", GW, PHONE_EP),
                (self.server, self.client, "s>c", PHONE_EP, GW),
            ):
                for data, destination, transport in src.datagrams_to_send():
                    moved = True
                    line = data.split(b"\r\n", 1)[0].decode()
                    self.log.append((self.now, direction, line))
                    dropped = next((d for d in self.drop if line.startswith(d)), None)
                    if dropped is not None:
                        self.drop.remove(dropped)
                        continue
                    assert destination == dst_addr, (line, destination)
                    dst.receive_data(data, src_addr, transport, self.now, dst_addr)

    def advance(self, until: float) -> None:
        while True:
            deadlines = [t for t in (self.client.get_timer(), self.server.get_timer()) if t is not None]
            if not deadlines or min(deadlines) > until:
                break
            self.now = min(deadlines)
            self.client.handle_timer(self.now)
            self.server.handle_timer(self.now)
            self.pump()
        self.now = until

    def at(self, now: float) -> Wire:
        self.now = now
        return self


def events_of(ep: SipEndpoint) -> list[object]:
    out = []
    while (event := ep.next_event()) is not None:
        out.append(event)
    return out


@pytest.fixture
def client_and_server() -> Iterator[Wire]:
    client = SipEndpoint(EndpointConfig(local_addresses={"udp": GW}, user_agent="gw"))
    server = SipEndpoint(EndpointConfig(local_addresses={"udp": PHONE_EP}, user_agent="phone"))
    yield Wire(client, server)


def dial(wire: Wire) -> tuple[int, int]:
    handle = wire.client.invite(
        "sip:agent7@10.0.0.50:5062", PHONE_EP, "udp", from_uri="sip:queue@gw.example.com",
        to_uri='"Agent 7" <sip:agent7@example.com>', sdp=OFFER, now=wire.now,
        headers=[("X-Queue", "sales")],
    )
    wire.pump()
    [incoming] = events_of(wire.server)
    assert isinstance(incoming, IncomingCallReceived)
    assert incoming.request.headers.get("X-Queue") == "sales"
    return handle, incoming.call_handle


def test_outgoing_call_answered_and_caller_hangs_up(client_and_server: Wire) -> None:
    wire = client_and_server
    out, inc = dial(wire)
    wire.server.send_provisional(inc, 180, now=wire.at(0.1).now)
    wire.pump()
    [progress] = events_of(wire.client)
    assert isinstance(progress, OutgoingCallProgressed) and progress.status == 180
    wire.server.answer(inc, ANSWER, now=wire.at(0.2).now)
    wire.pump()
    [answered] = events_of(wire.client)
    assert isinstance(answered, OutgoingCallAnswered) and answered.response.body == ANSWER
    [established] = events_of(wire.server)
    assert isinstance(established, CallEstablished)
    assert [line.split()[0] for _, d, line in wire.log if d == "c>s"] == ["INVITE", "ACK"]
    wire.client.hangup(out, now=wire.at(5.0).now)
    wire.pump()
    assert events_of(wire.client) == [CallTerminated(out, "local-bye")]
    assert events_of(wire.server) == [CallTerminated(inc, "remote-bye")]
    wire.advance(100.0)
    assert wire.client.get_timer() is None and wire.server.get_timer() is None
    assert not wire.client.has_pending_transactions()


def test_lost_invite_timer_a_then_408(client_and_server: Wire) -> None:
    wire = client_and_server
    wire.drop = ["INVITE"] * 7
    handle = wire.client.invite("sip:agent7@10.0.0.50:5062", PHONE_EP, "udp", from_uri="sip:q@gw",
                                to_uri="sip:agent7@example.com", sdp=OFFER, now=0.0)
    wire.pump()
    wire.advance(40.0)
    invites = [t for t, d, line in wire.log if line.startswith("INVITE")]
    assert invites == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # Timer A doubling, Timer B at 32
    assert events_of(wire.client) == [OutgoingCallFailed(handle, 408)]


def test_lost_ack_makes_server_retransmit_and_client_re_ack(client_and_server: Wire) -> None:
    wire = client_and_server
    out, inc = dial(wire)
    wire.drop = ["ACK"]
    wire.server.answer(inc, ANSWER, now=wire.at(1.0).now)
    wire.pump()
    assert isinstance(events_of(wire.client)[0], OutgoingCallAnswered)
    assert events_of(wire.server) == []
    wire.advance(2.0)  # the 2xx retransmission at 1.5 gets a new ACK
    [established] = events_of(wire.server)
    assert isinstance(established, CallEstablished)
    oks = [t for t, d, line in wire.log if d == "s>c" and line.endswith("200 OK")]
    acks = [t for t, d, line in wire.log if line.startswith("ACK")]
    assert oks == [1.0, 1.5] and acks == [1.0, 1.5]
    assert events_of(wire.client) == []


def test_caller_cancels_ringing_call(client_and_server: Wire) -> None:
    wire = client_and_server
    out, inc = dial(wire)
    wire.server.send_provisional(inc, 180, now=0.1)
    wire.pump()
    events_of(wire.client)
    wire.client.hangup(out, now=wire.at(2.0).now)
    wire.pump()
    assert events_of(wire.server) == [CallCancelled(inc)]
    [failed] = events_of(wire.client)
    assert isinstance(failed, OutgoingCallFailed) and failed.status == 487
    lines = [line for _, _, line in wire.log]
    assert "CANCEL sip:agent7@10.0.0.50:5062 SIP/2.0" in lines
    assert lines[-3:] == ["SIP/2.0 200 OK", "SIP/2.0 487 Request Terminated", "ACK sip:agent7@10.0.0.50:5062 SIP/2.0"]
    wire.advance(100.0)
    assert len([line for _, _, line in wire.log if "487" in line]) == 1  # ACKed: no Timer G retransmission


def test_cancel_waits_for_a_provisional(client_and_server: Wire) -> None:
    wire = client_and_server
    wire.drop = ["SIP/2.0 100"]
    handle = wire.client.invite("sip:agent7@10.0.0.50:5062", PHONE_EP, "udp", from_uri="sip:q@gw",
                                to_uri="sip:agent7@example.com", sdp=OFFER, now=0.0)
    wire.pump()
    [incoming] = events_of(wire.server)
    wire.client.hangup(handle, now=0.1)
    wire.pump()
    assert not any(line.startswith("CANCEL") for _, _, line in wire.log)  # §9.1: not before a 1xx
    wire.server.send_provisional(incoming.call_handle, 180, now=wire.at(0.3).now)
    wire.pump()
    assert any(line.startswith("CANCEL") for _, _, line in wire.log)
    assert events_of(wire.server) == [CallCancelled(incoming.call_handle)]
    [failed] = events_of(wire.client)  # no OutgoingCallProgressed: the TU already hung up
    assert isinstance(failed, OutgoingCallFailed) and failed.status == 487


def test_callee_busy(client_and_server: Wire) -> None:
    wire = client_and_server
    out, inc = dial(wire)
    wire.server.reject(inc, 486, now=wire.at(0.5).now)
    wire.pump()
    [failed] = events_of(wire.client)
    assert isinstance(failed, OutgoingCallFailed) and failed.status == 486
    assert wire.log[-1][2].startswith("ACK")  # the client transaction ACKs non-2xx itself
    wire.advance(100.0)
    assert len([1 for _, _, line in wire.log if "486" in line]) == 1


def test_info_and_reinvite_between_cores(client_and_server: Wire) -> None:
    wire = client_and_server
    out, inc = dial(wire)
    wire.server.answer(inc, ANSWER, now=0.1)
    wire.pump()
    events_of(wire.client), events_of(wire.server)
    wire.client.send_info(out, b"Signal=1\r\n", "application/dtmf-relay", now=wire.at(1.0).now)
    wire.pump()
    [info] = events_of(wire.server)
    assert isinstance(info, InfoReceived) and info.request.cseq == (2, "INFO")
    wire.client.reinvite(out, HOLD, now=wire.at(2.0).now)
    wire.pump()
    [re] = events_of(wire.server)
    assert isinstance(re, ReinviteReceived) and re.request.cseq == (3, "INVITE")
    wire.server.answer_reinvite(inc, 200, ANSWER + b"a=recvonly\r\n", now=wire.at(2.1).now)
    wire.pump()
    [answered] = events_of(wire.client)
    assert isinstance(answered, ReinviteAnswered) and answered.status == 200
    wire.advance(60.0)
    # the ACK for the re-INVITE's 2xx arrived: no retransmission, nothing terminated
    assert events_of(wire.server) == [] and events_of(wire.client) == []
    assert wire.client.call_state(out) is LegState.CONFIRMED
    wire.server.hangup(inc, now=wire.now)
    wire.pump()
    assert events_of(wire.client) == [CallTerminated(out, "remote-bye")]
    assert events_of(wire.server) == [CallTerminated(inc, "local-bye")]


def test_reinvite_glare_gets_491(client_and_server: Wire) -> None:
    wire = client_and_server
    out, inc = dial(wire)
    wire.server.answer(inc, ANSWER, now=0.1)
    wire.pump()
    events_of(wire.client), events_of(wire.server)
    wire.drop = ["INVITE"]  # our re-INVITE is in flight (lost once)
    wire.client.reinvite(out, HOLD, now=wire.at(1.0).now)
    wire.pump()
    wire.server.reinvite(inc, HOLD, now=wire.now)
    wire.pump()
    [answered] = events_of(wire.server)
    assert isinstance(answered, ReinviteAnswered) and answered.status == 491


# ============================================================================== more UAS rules


def test_record_route_copied_and_used_for_our_bye() -> None:
    uas = Uas()
    rr = "Record-Route: <sip:edge1.example.com;lr>, <sip:edge2.example.com;lr>\r\n"
    handle, _ = uas.incoming_call(extra=rr)
    uas.ep.send_provisional(handle, 180, now=0.0)
    [ringing] = uas.drain()
    assert ringing.headers.get_all("Record-Route") == ["<sip:edge1.example.com;lr>", "<sip:edge2.example.com;lr>"]
    uas.ep.answer(handle, ANSWER, now=0.1)
    [ok] = uas.drain()
    assert ok.headers.get_all("Record-Route") == ["<sip:edge1.example.com;lr>", "<sip:edge2.example.com;lr>"]
    uas.feed(raw("ACK", branch="z9hG4bK-a", to_tag=ok.to_tag, body=b""))
    uas.ep.hangup(handle, now=1.0)
    [(bye, destination, _)] = uas.drain_raw()
    # §12.2.1.1 loose routing: Request-URI = remote target, Route = route set (UAS order)
    assert isinstance(bye, SipRequest) and str(bye.uri) == "sip:caller@10.0.0.9:5060"
    assert bye.headers.get_all("Route") == ["<sip:edge1.example.com;lr>", "<sip:edge2.example.com;lr>"]
    assert destination == PHONE  # symmetric signalling: back to where the INVITE came from


def test_oversize_request_gets_513() -> None:
    uas = Uas()
    big = raw("OPTIONS", branch="z9hG4bK-big", body=b"x" * 70000, content_type="text/plain")
    assert statuses(uas.feed(big)) == [513]


def test_policy_bug_answers_500(caplog: pytest.LogCaptureFixture) -> None:
    def broken(request: SipRequest, source: tuple[str, int], transport: str, now: float) -> SipResponse | None:
        raise KeyError("oops")

    uas = Uas(policy=broken)
    with caplog.at_level(logging.CRITICAL):
        out = uas.feed(raw())
    assert statuses(out) == [500]


def test_reinvite_on_early_dialog_gets_500_retry_after() -> None:
    uas = Uas()
    handle, _ = uas.incoming_call()
    uas.ep.send_provisional(handle, 180, now=0.0)
    [ringing] = uas.drain()
    refused = only_response(uas.feed(raw(branch="z9hG4bK-re", to_tag=ringing.to_tag, cseq=2)))
    assert refused.status_code == 500 and refused.headers.get("Retry-After") is not None


def test_response_with_two_vias_is_dropped() -> None:
    uas = Uas()
    handle = uas.ep.invite("sip:a@10.0.0.50", PHONE_EP, "udp", from_uri="sip:q@gw", to_uri="sip:a@x", sdp=OFFER, now=0.0)
    [invite] = uas.drain()
    assert isinstance(invite, SipRequest)
    ringing = build_response(invite, 180, to_tag="x")
    ringing.headers.add("Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-extra")
    uas.ep.receive_data(ringing.serialize(), PHONE_EP, "udp", 0.1, GW)
    assert uas.events() == []
    assert uas.ep.call_state(handle) is LegState.CALLING


# ============================================================================== more UAC rules


def outgoing(uas: Uas, transport: str = "udp") -> tuple[int, SipRequest]:
    handle = uas.ep.invite("sip:agent@10.0.0.50:5062", PHONE_EP, transport, from_uri="sip:q@gw.example.com",
                           to_uri="sip:agent@example.com", sdp=OFFER, now=uas.now)
    [invite] = uas.drain()
    assert isinstance(invite, SipRequest)
    return handle, invite


def reply(uas: Uas, invite: SipRequest, status: int, *, to_tag: str = "callee", contact: bool = True,
          transport: str = "udp") -> list[SipRequest | SipResponse]:
    headers = [("Contact", "<sip:agent@10.0.0.50:5062>")] if contact else []
    response = build_response(invite, status, to_tag=to_tag if status > 100 else None, headers=headers)
    uas.ep.receive_data(response.serialize(), PHONE_EP, transport, uas.now, GW)
    return uas.drain()


def test_outgoing_invite_shape() -> None:
    uas = Uas()
    _, invite = outgoing(uas)
    assert invite.top_via.branch.startswith("z9hG4bK")  # type: ignore[union-attr]
    assert invite.top_via.rport is True and invite.top_via.host == "10.0.0.2"
    assert invite.from_tag and invite.to_tag is None and invite.cseq == (1, "INVITE")
    assert invite.headers.get("Contact") == "<sip:mediagw@10.0.0.2:5060>"
    assert invite.content_type == "application/sdp" and invite.body == OFFER
    assert invite.max_forwards == 70 and invite.headers.get("User-Agent") == "mediagw-test"


def test_outgoing_over_tcp_has_no_retransmissions() -> None:
    uas = Uas()
    handle, invite = outgoing(uas, "tcp")
    assert invite.top_via.transport == "TCP"
    assert invite.headers.get("Contact") == "<sip:mediagw@10.0.0.2:5060;transport=tcp>"
    assert uas.advance(31.9) == []
    uas.advance(32.0)
    assert uas.events() == [OutgoingCallFailed(handle, 408)]


def test_2xx_without_contact_fails_the_call() -> None:
    uas = Uas()
    handle, invite = outgoing(uas)
    reply(uas, invite, 200, contact=False)
    [failed] = uas.events()
    assert isinstance(failed, OutgoingCallFailed) and failed.status == 502


def test_second_fork_2xx_is_acked_and_byed() -> None:
    uas = Uas()
    handle, invite = outgoing(uas)
    [ack] = reply(uas, invite, 200, to_tag="fork1")
    assert isinstance(ack, SipRequest) and ack.method == "ACK" and ack.cseq == (1, "ACK")
    assert str(ack.uri) == "sip:agent@10.0.0.50:5062"
    assert isinstance(uas.events()[0], OutgoingCallAnswered)
    out = reply(uas, invite, 200, to_tag="fork2")
    assert [(m.method, m.to_tag) for m in out] == [("ACK", "fork2"), ("BYE", "fork2")]  # type: ignore[union-attr]
    assert uas.events() == []
    # a retransmission of the first 2xx is ACKed again
    [again] = reply(uas, invite, 200, to_tag="fork1")
    assert isinstance(again, SipRequest) and again.serialize() == ack.serialize()


def test_cancel_without_final_response_gives_up_after_64_t1() -> None:
    uas = Uas()
    handle, invite = outgoing(uas)
    reply(uas, invite, 180)
    assert isinstance(uas.events()[0], OutgoingCallProgressed)
    uas.now = 1.0
    uas.ep.hangup(handle, now=1.0)
    [cancel] = uas.drain()
    assert isinstance(cancel, SipRequest) and cancel.method == "CANCEL"
    assert cancel.branch == invite.branch and cancel.cseq == (1, "CANCEL")  # §9.1
    log = uas.advance(40.0)
    assert all(m.method == "CANCEL" for _, m in log)  # type: ignore[union-attr]
    assert uas.events() == [OutgoingCallFailed(handle, 487)]


def test_hangup_race_2xx_after_cancel_acks_and_byes() -> None:
    uas = Uas()
    handle, invite = outgoing(uas)
    reply(uas, invite, 180)
    uas.events()
    uas.ep.hangup(handle, now=0.5)
    uas.drain()
    out = reply(uas, invite, 200)
    assert [m.method for m in out] == ["ACK", "BYE"]  # type: ignore[union-attr]
    [failed] = uas.events()
    assert isinstance(failed, OutgoingCallFailed) and failed.status == 487
    bye = out[1]
    uas.ep.receive_data(build_response(bye, 200).serialize(), PHONE_EP, "udp", 1.0, GW)  # type: ignore[arg-type]
    assert uas.events() == []  # the TU already heard the end of this leg


def test_synchronous_refusal_sends_no_100() -> None:
    uas = Uas()
    # every check runs before the INVITE reaches the TU, so a refusal needs no 100 (§17.2.1: 200 ms rule)
    out = uas.feed(raw(uri="mailto:x@example.com"))
    assert statuses(out) == [416]


def test_unparsable_to_gets_400_with_to_copied_verbatim() -> None:
    uas = Uas()
    data = raw("OPTIONS", branch="z9hG4bK-q").replace(b"To: <sip:queue@example.com>", b'To: "Mr. J. User <sip:j@example.com>')
    uas.ep.receive_data(data, PHONE, "udp", 0.0, GW)
    [(reply, _, _)] = uas.ep.datagrams_to_send()
    assert reply.startswith(b"SIP/2.0 400 ")
    assert b'\r\nTo: "Mr. J. User <sip:j@example.com>\r\n' in reply


def test_lost_ack_for_reinvite_2xx_is_resent_once_reported(client_and_server: Wire) -> None:
    wire = client_and_server
    out, inc = dial(wire)
    wire.server.answer(inc, ANSWER, now=0.1)
    wire.pump()
    events_of(wire.client), events_of(wire.server)
    wire.client.reinvite(out, HOLD, now=wire.at(1.0).now)
    wire.pump()
    events_of(wire.server)
    wire.drop = ["ACK"]
    wire.server.answer_reinvite(inc, 200, ANSWER, now=wire.at(1.1).now)
    wire.pump()
    wire.advance(5.0)
    assert [type(e) for e in events_of(wire.client)] == [ReinviteAnswered]  # once, not per retransmission
    acks = [t for t, _, line in wire.log if line.startswith("ACK")]
    assert acks[-2:] == [1.1, 1.6]  # the lost one, then the answer to the first 2xx retransmission
    assert events_of(wire.server) == []
    assert wire.server.call_state(inc) is LegState.CONFIRMED


def test_transport_error_fails_outgoing_call_at_once() -> None:
    uas = Uas()
    handle, _ = outgoing(uas, "tcp")
    uas.ep.report_transport_error(PHONE_EP, "tcp", 0.2)
    assert uas.events() == [OutgoingCallFailed(handle, 503)]
    assert uas.ep.get_timer() is None


def test_transport_error_on_bye_ends_the_call() -> None:
    uas = Uas()
    handle, _ = uas.established_call()
    uas.ep.hangup(handle, now=1.0)
    uas.drain()
    uas.ep.report_transport_error(PHONE, "udp", 1.1)
    assert uas.events() == [CallTerminated(handle, "timeout")]


def test_info_answered_481_ends_the_call_without_bye() -> None:
    uas = Uas()
    handle, _ = uas.established_call()
    uas.ep.send_info(handle, b"Signal=1\r\n", "application/dtmf-relay", now=1.0)
    [info] = uas.drain()
    assert isinstance(info, SipRequest)
    uas.ep.receive_data(build_response(info, 481).serialize(), PHONE, "udp", 1.1, GW)
    assert uas.drain() == []
    assert uas.events() == [CallTerminated(handle, "dialog-gone")]
    assert uas.ep.call_state(handle) is LegState.TERMINATED


def test_mutated_messages_never_hit_an_internal_error(caplog: pytest.LogCaptureFixture) -> None:
    """Seeded mutation fuzzing of every request kind against a live dialog: replies or drops, no bug."""
    import random

    rng = random.Random(3261)
    uas = Uas()
    handle, ok = uas.established_call()
    tag = ok.to_tag or ""
    seeds = [
        raw(branch="z9hG4bK-f1", call_id="fz"), raw("OPTIONS", branch="z9hG4bK-f2"), raw("CANCEL", body=b""),
        raw("BYE", to_tag=tag, cseq=9), raw("INFO", to_tag=tag, cseq=10, body=b"Signal=1\r\n"),
        raw("INVITE", branch="z9hG4bK-f3", to_tag=tag, cseq=11, body=HOLD),
        raw("ACK", branch="z9hG4bK-f4", to_tag=tag, cseq=11, body=b""),
    ]
    tokens = [b";", b",", b"<", b">", b'"', b" ", b"@", b":", b"0", b"\r\n ", b"\x00", b"\xff"]
    with caplog.at_level(logging.WARNING):
        for _ in range(400):
            data = bytearray(rng.choice(seeds))
            for _ in range(rng.randint(1, 3)):
                at = rng.randrange(len(data))
                if rng.random() < 0.5:
                    data[at:at] = rng.choice(tokens)
                else:
                    del data[at:at + rng.randint(1, 12)]
            uas.ep.receive_data(bytes(data), PHONE, rng.choice(["udp", "tcp"]), uas.now, GW)
            uas.ep.datagrams_to_send()
            uas.events()
            uas.now += 0.05
            uas.ep.handle_timer(uas.now)
    assert not [r for r in caplog.records if r.exc_info], "an internal error was logged"


def test_wildcard_bound_socket_advertises_the_request_uri_address() -> None:
    ep = SipEndpoint(EndpointConfig())  # no local_addresses: learn from the socket
    ep.receive_data(raw(uri="sip:queue@192.0.2.44:5070"), PHONE, "udp", 0.0, ("0.0.0.0", 5070))
    ep.datagrams_to_send()
    event = ep.next_event()
    assert isinstance(event, IncomingCallReceived)
    ep.answer(event.call_handle, ANSWER, now=0.0)
    [(data, _, _)] = ep.datagrams_to_send()
    assert b"Contact: <sip:mediagw@192.0.2.44:5070>" in data
