"""RFC 3261 §17 / RFC 6026 transactions driven with raw bytes and an explicit clock."""
from __future__ import annotations

import pytest

from mediagw.errors import ConfigError, LocalError
from mediagw.sip.message import SipRequest, SipResponse, build_response, parse_message
from mediagw.sip.transaction import (
    ClientInviteState,
    ClientInviteTransaction,
    ClientNonInviteState,
    ClientNonInviteTransaction,
    Outbox,
    ResponseReceived,
    ServerInviteState,
    ServerInviteTransaction,
    ServerNonInviteState,
    ServerNonInviteTransaction,
    TimerSettings,
    TransactionError,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimedOut,
    response_destination,
)

PEER = ("192.0.2.10", 5060)
T = TimerSettings()  # T1 0.5, T2 4, T4 5


def request(
    method: str = "INVITE",
    *,
    branch: str = "z9hG4bK-abc",
    sent_by: str = "192.0.2.10:5060",
    cseq: int = 1,
    cseq_method: str | None = None,
    from_tag: str = "f1",
    to_tag: str | None = None,
    call_id: str = "call-1@192.0.2.10",
    via_params: str = "",
    extra: str = "",
) -> SipRequest:
    to = "<sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else "")
    data = (
        f"{method} sip:bob@example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {sent_by};branch={branch}{via_params}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: Alice <sip:alice@example.com>;tag={from_tag}\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {cseq_method or method}\r\n"
        "Contact: <sip:alice@192.0.2.10>\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    message = parse_message(data)
    assert isinstance(message, SipRequest)
    return message


def response_to(req: SipRequest, status: int, to_tag: str | None = "t1") -> SipResponse:
    return build_response(req, status, to_tag=to_tag if status > 100 else None)


def sent(outbox: Outbox) -> list[bytes]:
    out = [data for data, _, _ in outbox.messages]
    outbox.messages.clear()
    return out


def run_clock(tx: object, until: float, outbox: Outbox) -> list[tuple[float, bytes]]:
    """Fire every timer up to ``until`` at its exact deadline; return (time, data) of what was sent."""
    log: list[tuple[float, bytes]] = []
    while True:
        deadline = tx.get_timer()  # type: ignore[attr-defined]
        if deadline is None or deadline > until:
            return log
        tx.handle_timer(deadline)  # type: ignore[attr-defined]
        log.extend((deadline, data) for data in sent(outbox))


def events(outbox: Outbox) -> list[object]:
    out = list(outbox.events)
    outbox.events.clear()
    return [e for e in out if not isinstance(e, TransactionTerminated)]


# -- client INVITE ----------------------------------------------------------------------------------------


def test_client_invite_timer_a_doubles_without_cap_until_timer_b() -> None:
    outbox = Outbox()
    tx = ClientInviteTransaction(request(), PEER, "udp", T, outbox, now=0.0)
    assert tx.state is ClientInviteState.CALLING
    assert len(sent(outbox)) == 1
    log = run_clock(tx, 100.0, outbox)
    # §17.1.1.2: A = T1, 2T1, 4T1 ... (no T2 cap for INVITE) until B = 64*T1 = 32 s
    assert [t for t, _ in log] == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert tx.state is ClientInviteState.TERMINATED
    [timeout] = events(outbox)
    assert isinstance(timeout, TransactionTimedOut) and timeout.timer == "B"


def test_client_invite_reliable_has_no_timer_a() -> None:
    outbox = Outbox()
    tx = ClientInviteTransaction(request(), PEER, "tcp", T, outbox, now=0.0)
    sent(outbox)
    assert tx.get_timer() == 32.0
    assert run_clock(tx, 100.0, outbox) == []
    assert tx.state is ClientInviteState.TERMINATED


def test_client_invite_provisional_stops_retransmissions() -> None:
    outbox = Outbox()
    req = request()
    tx = ClientInviteTransaction(req, PEER, "udp", T, outbox, now=0.0)
    sent(outbox)
    tx.receive_response(response_to(req, 180), 0.2)
    assert tx.state is ClientInviteState.PROCEEDING
    assert [type(e) for e in events(outbox)] == [ResponseReceived]
    assert tx.get_timer() is None  # no A, no B in PROCEEDING


def test_client_invite_non_2xx_acked_and_timer_d() -> None:
    outbox = Outbox()
    req = request(extra="Route: <sip:proxy.example.com;lr>\r\n")
    tx = ClientInviteTransaction(req, PEER, "udp", T, outbox, now=0.0)
    sent(outbox)
    busy = response_to(req, 486)
    tx.receive_response(busy, 1.0)
    assert tx.state is ClientInviteState.COMPLETED
    [ack_data] = sent(outbox)
    ack = parse_message(ack_data)
    assert isinstance(ack, SipRequest)
    # §17.1.1.3: same branch, Request-URI, Call-ID, From, CSeq number; To of the response; Route copied
    assert ack.method == "ACK" and ack.cseq == (1, "ACK")
    assert ack.branch == req.branch and str(ack.uri) == str(req.uri)
    assert ack.to_tag == "t1" and ack.from_tag == "f1"
    assert len(ack.vias) == 1 and ack.headers.get("Route") == "<sip:proxy.example.com;lr>"
    [passed] = events(outbox)
    assert isinstance(passed, ResponseReceived) and passed.response.status_code == 486
    # a retransmitted final is ACKed again but not passed up
    tx.receive_response(response_to(req, 486), 2.0)
    assert len(sent(outbox)) == 1 and events(outbox) == []
    assert tx.get_timer() == 33.0  # Timer D: 32 s for UDP
    tx.handle_timer(33.0)
    assert tx.state is ClientInviteState.TERMINATED


def test_client_invite_reliable_terminates_at_once_after_non_2xx() -> None:
    outbox = Outbox()
    req = request()
    tx = ClientInviteTransaction(req, PEER, "tcp", T, outbox, now=0.0)
    tx.receive_response(response_to(req, 603), 1.0)
    assert tx.state is ClientInviteState.TERMINATED  # Timer D = 0 for reliable transports


def test_client_invite_2xx_enters_accepted_and_passes_every_2xx() -> None:
    outbox = Outbox()
    req = request()
    tx = ClientInviteTransaction(req, PEER, "udp", T, outbox, now=0.0)
    sent(outbox)
    tx.receive_response(response_to(req, 200), 1.0)
    assert tx.state is ClientInviteState.ACCEPTED
    assert sent(outbox) == []  # the ACK for a 2xx is the TU's job
    tx.receive_response(response_to(req, 200), 1.5)
    tx.receive_response(response_to(req, 200, to_tag="fork2"), 1.6)
    assert [e.response.status_code for e in events(outbox)] == [200, 200, 200]  # type: ignore[attr-defined]
    assert tx.get_timer() == 33.0  # RFC 6026 Timer M = 64*T1
    tx.handle_timer(33.0)
    assert tx.state is ClientInviteState.TERMINATED


def test_client_invite_cancel_guard() -> None:
    outbox = Outbox()
    req = request()
    tx = ClientInviteTransaction(req, PEER, "udp", T, outbox, now=0.0)
    tx.receive_response(response_to(req, 180), 0.1)
    events(outbox)
    tx.cancel_timeout(40.0)
    assert tx.state is ClientInviteState.TERMINATED
    [timeout] = events(outbox)
    assert isinstance(timeout, TransactionTimedOut) and timeout.timer == "CANCEL"


# -- client non-INVITE ------------------------------------------------------------------------------------


def test_client_non_invite_timer_e_caps_at_t2_until_timer_f() -> None:
    outbox = Outbox()
    tx = ClientNonInviteTransaction(request("BYE", to_tag="t1"), PEER, "udp", T, outbox, now=0.0)
    sent(outbox)
    log = run_clock(tx, 100.0, outbox)
    # §17.1.2.2: E = T1, 2T1, 4T1, then T2 (4 s) until F = 64*T1
    assert [t for t, _ in log] == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert tx.state is ClientNonInviteState.TERMINATED
    [timeout] = events(outbox)
    assert isinstance(timeout, TransactionTimedOut) and timeout.timer == "F"


def test_client_non_invite_proceeding_retransmits_every_t2() -> None:
    outbox = Outbox()
    req = request("OPTIONS")
    tx = ClientNonInviteTransaction(req, PEER, "udp", T, outbox, now=0.0)
    sent(outbox)
    tx.handle_timer(0.5)
    sent(outbox)
    tx.receive_response(response_to(req, 100), 0.6)
    assert tx.state is ClientNonInviteState.PROCEEDING
    log = run_clock(tx, 12.0, outbox)
    assert [t for t, _ in log] == [1.5, 5.5, 9.5]  # next E was armed at 1 s; in PROCEEDING E = T2


def test_client_non_invite_final_then_timer_k() -> None:
    outbox = Outbox()
    req = request("INFO", to_tag="t1")
    tx = ClientNonInviteTransaction(req, PEER, "udp", T, outbox, now=0.0)
    tx.receive_response(response_to(req, 200), 0.2)
    assert tx.state is ClientNonInviteState.COMPLETED
    tx.receive_response(response_to(req, 200), 0.3)  # absorbed
    assert [e.response.status_code for e in events(outbox)] == [200]  # type: ignore[attr-defined]
    assert tx.get_timer() == pytest.approx(5.2)  # Timer K = T4
    tx.handle_timer(5.2)
    assert tx.state is ClientNonInviteState.TERMINATED


def test_client_non_invite_reliable_k_is_zero() -> None:
    outbox = Outbox()
    req = request("BYE", to_tag="t1")
    tx = ClientNonInviteTransaction(req, PEER, "tcp", T, outbox, now=0.0)
    assert tx.get_timer() == 32.0  # only F
    tx.receive_response(response_to(req, 200), 0.2)
    assert tx.state is ClientNonInviteState.TERMINATED


# -- server INVITE ----------------------------------------------------------------------------------------


def test_server_invite_sends_100_at_once_and_resends_last_provisional() -> None:
    outbox = Outbox()
    req = request()
    tx = ServerInviteTransaction(req, PEER, "udp", T, outbox, now=0.0)
    [trying] = sent(outbox)
    assert trying.startswith(b"SIP/2.0 100 Trying\r\n")
    tx.receive_request(req, 0.5)
    assert sent(outbox) == [trying]
    tx.send_response(response_to(req, 180), 1.0)
    [ringing] = sent(outbox)
    tx.receive_request(req, 1.5)
    assert sent(outbox) == [ringing]


def test_server_invite_timer_g_and_h_without_ack() -> None:
    outbox = Outbox()
    req = request()
    tx = ServerInviteTransaction(req, PEER, "udp", T, outbox, now=0.0)
    sent(outbox)
    tx.send_response(response_to(req, 486), 0.0)
    [busy] = sent(outbox)
    assert tx.state is ServerInviteState.COMPLETED
    log = run_clock(tx, 100.0, outbox)
    # §17.2.1: G = T1 doubling up to T2, until H = 64*T1
    assert [t for t, _ in log] == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert all(data == busy for _, data in log)
    assert tx.state is ServerInviteState.TERMINATED
    [timeout] = events(outbox)
    assert isinstance(timeout, TransactionTimedOut) and timeout.timer == "H"


def test_server_invite_ack_confirms_then_timer_i() -> None:
    outbox = Outbox()
    req = request()
    tx = ServerInviteTransaction(req, PEER, "udp", T, outbox, now=0.0)
    tx.send_response(response_to(req, 404), 0.0)
    sent(outbox)
    tx.receive_request(req, 0.2)  # retransmitted INVITE in COMPLETED: final resent
    assert len(sent(outbox)) == 1
    ack = request("ACK", cseq_method="ACK", to_tag="t1")
    tx.receive_request(ack, 0.3)
    assert tx.state is ServerInviteState.CONFIRMED
    tx.receive_request(ack, 0.4)  # absorbed
    assert sent(outbox) == []
    assert tx.get_timer() == pytest.approx(5.3)  # Timer I = T4
    tx.handle_timer(5.3)
    assert tx.state is ServerInviteState.TERMINATED


def test_server_invite_reliable_no_g_and_i_zero() -> None:
    outbox = Outbox()
    req = request()
    tx = ServerInviteTransaction(req, PEER, "tcp", T, outbox, now=0.0)
    tx.send_response(response_to(req, 480), 0.0)
    assert tx.get_timer() == 32.0  # H only
    tx.receive_request(request("ACK", to_tag="t1"), 0.1)
    assert tx.state is ServerInviteState.TERMINATED


def test_server_invite_2xx_accepted_absorbs_invite_and_passes_tu_retransmissions() -> None:
    outbox = Outbox()
    req = request()
    tx = ServerInviteTransaction(req, PEER, "udp", T, outbox, now=0.0)
    sent(outbox)
    ok = response_to(req, 200)
    tx.send_response(ok, 0.0)
    assert tx.state is ServerInviteState.ACCEPTED
    assert len(sent(outbox)) == 1
    tx.receive_request(req, 0.1)  # RFC 6026 §8.7: absorbed, no 2xx from the transaction
    assert sent(outbox) == []
    tx.send_response(ok, 0.5)  # the TU's retransmission passes
    assert len(sent(outbox)) == 1
    assert tx.get_timer() == 32.0  # Timer L
    tx.handle_timer(32.0)
    assert tx.state is ServerInviteState.TERMINATED


def test_illegal_transition_names_state_and_event() -> None:
    outbox = Outbox()
    req = request()
    tx = ServerInviteTransaction(req, PEER, "udp", T, outbox, now=0.0)
    tx.send_response(response_to(req, 486), 0.0)
    with pytest.raises(TransactionError) as info:
        tx.send_response(response_to(req, 200), 0.1)
    assert "COMPLETED" in str(info.value) and "send_2xx" in str(info.value)
    assert isinstance(info.value, LocalError)


def test_wrong_kind_of_transaction_is_local_error() -> None:
    with pytest.raises(LocalError):
        ServerNonInviteTransaction(request(), PEER, "udp", T, Outbox(), now=0.0)
    with pytest.raises(LocalError):
        ClientNonInviteTransaction(request("ACK"), PEER, "udp", T, Outbox(), now=0.0)


# -- server non-INVITE ------------------------------------------------------------------------------------


def test_server_non_invite_absorbs_then_resends_final_and_timer_j() -> None:
    outbox = Outbox()
    req = request("BYE", to_tag="t1")
    tx = ServerNonInviteTransaction(req, PEER, "udp", T, outbox, now=0.0)
    tx.receive_request(req, 0.1)  # TRYING: nothing to resend
    assert sent(outbox) == []
    tx.send_response(response_to(req, 200), 0.2)
    [ok] = sent(outbox)
    assert tx.state is ServerNonInviteState.COMPLETED
    tx.receive_request(req, 1.0)
    assert sent(outbox) == [ok]
    assert tx.get_timer() == pytest.approx(32.2)  # Timer J = 64*T1
    tx.handle_timer(32.2)
    assert tx.state is ServerNonInviteState.TERMINATED
    with pytest.raises(TransactionError):
        tx.send_response(response_to(req, 200), 33.0)


def test_server_non_invite_provisional_resent() -> None:
    outbox = Outbox()
    req = request("OPTIONS")
    tx = ServerNonInviteTransaction(req, PEER, "udp", T, outbox, now=0.0)
    tx.send_response(response_to(req, 100), 0.0)
    assert tx.state is ServerNonInviteState.PROCEEDING
    [trying] = sent(outbox)
    tx.receive_request(req, 0.5)
    assert sent(outbox) == [trying]


def test_server_non_invite_reliable_j_is_zero() -> None:
    outbox = Outbox()
    req = request("BYE", to_tag="t1")
    tx = ServerNonInviteTransaction(req, PEER, "tcp", T, outbox, now=0.0)
    tx.send_response(response_to(req, 200), 0.0)
    assert tx.state is ServerNonInviteState.TERMINATED


def test_configurable_timers() -> None:
    fast = TimerSettings(t1=0.1, t2=0.4, t4=1.0)
    outbox = Outbox()
    tx = ClientNonInviteTransaction(request("OPTIONS"), PEER, "udp", fast, outbox, now=0.0)
    sent(outbox)
    log = run_clock(tx, 10.0, outbox)
    assert [round(t, 3) for t, _ in log][:5] == [0.1, 0.3, 0.7, 1.1, 1.5]
    assert tx.state is ClientNonInviteState.TERMINATED and fast.timeout == pytest.approx(6.4)
    with pytest.raises(ConfigError):
        TimerSettings(t1=1.0, t2=0.5)


# -- matching (§17.1.3, §17.2.3) and the layer ---------------------------------------------------------


def test_server_matching_branch_sent_by_method() -> None:
    layer = TransactionLayer()
    invite = request()
    tx = layer.create_server(invite, PEER, "udp", 0.0)
    assert layer.match_server(request()) is tx  # retransmission
    assert layer.match_server(request("ACK", to_tag="t1")) is tx  # ACK for non-2xx matches the INVITE
    assert layer.match_server(request(sent_by="192.0.2.11:5060")) is None  # other sent-by
    assert layer.match_server(request(branch="z9hG4bK-other")) is None
    cancel = request("CANCEL")
    assert layer.match_server(cancel) is None  # CANCEL is its own transaction
    assert layer.match_cancelled(cancel) is tx  # §9.2
    # the ports default per transport: "host" and "host:5060" are the same sent-by
    assert layer.match_server(request(sent_by="192.0.2.10")) is tx


def test_server_matching_rfc2543_fallback() -> None:
    layer = TransactionLayer()
    old = request(branch="old-style-1")
    tx = layer.create_server(old, PEER, "udp", 0.0)
    assert layer.match_server(request(branch="old-style-1")) is tx
    assert layer.match_server(request(branch="old-style-1", cseq=2)) is None


def test_client_matching_branch_and_cseq_method() -> None:
    layer = TransactionLayer()
    branch = layer.new_branch()
    assert branch.startswith("z9hG4bK") and layer.is_own_branch(branch)
    invite = request(branch=branch)
    tx = layer.create_client(invite, PEER, "udp", 0.0)
    assert layer.match_client(response_to(invite, 180)) is tx
    cancel = request("CANCEL", branch=branch)
    cancel_tx = layer.create_client(cancel, PEER, "udp", 0.0)
    assert layer.match_client(response_to(cancel, 200)) is cancel_tx
    assert layer.match_client(response_to(request(branch="z9hG4bK-x"), 200)) is None
    with pytest.raises(LocalError):
        layer.create_client(invite, PEER, "udp", 0.0)


def test_merged_request_detection() -> None:
    layer = TransactionLayer()
    first = request(branch="z9hG4bK-path1")
    layer.create_server(first, PEER, "udp", 0.0)
    merged = request(branch="z9hG4bK-path2", sent_by="192.0.2.77:5060")
    assert layer.find_merged(merged) is not None
    assert layer.find_merged(request(branch="z9hG4bK-path3", cseq=2)) is None
    assert layer.find_merged(request(branch="z9hG4bK-path4", to_tag="x")) is None


def test_layer_collects_terminated_transactions() -> None:
    layer = TransactionLayer()
    req = request("OPTIONS")
    tx = layer.create_server(req, PEER, "udp", 0.0)
    tx.send_response(response_to(req, 200), 0.0)
    assert layer.get_timer() == 32.0
    layer.handle_timer(32.0)
    assert layer.servers == {} and layer.get_timer() is None


def test_response_destination_rules() -> None:
    # §18.2.2 with RFC 3581: rport with a value wins, then received, then sent-by; reliable -> source
    nat = request(via_params=";rport=40000;received=203.0.113.5")
    assert response_destination(nat, ("203.0.113.5", 40000), "udp") == ("203.0.113.5", 40000)
    received = request(via_params=";received=203.0.113.5")
    assert response_destination(received, ("203.0.113.5", 7777), "udp") == ("203.0.113.5", 5060)
    assert response_destination(request(), ("192.0.2.10", 5060), "udp") == ("192.0.2.10", 5060)
    assert response_destination(request(), ("198.51.100.1", 33333), "tcp") == ("198.51.100.1", 33333)
    maddr = request(via_params=";maddr=239.1.1.1")
    assert response_destination(maddr, PEER, "udp") == ("239.1.1.1", 5060)
