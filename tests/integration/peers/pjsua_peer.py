"""A real SIP user agent (pjsua2) run as its own process and driven by JSON lines.

Usage: ``python pjsua_peer.py [--tone HZ] [--record-dir DIR] [--auto-answer CODE] [--answer-delay S]``

Commands, one JSON object per line on stdin:
  {"cmd": "register", "registrar": "sip:127.0.0.1:5060", "user": "agent1", "password": "...",
   "transport": "udp", "expires": 300}
  {"cmd": "unregister"}
  {"cmd": "listen", "user": "phone"}   (a local account that takes incoming calls, no registration)
  {"cmd": "call", "uri": "sip:1000@127.0.0.1:5060", "from_user": "caller", "headers": {"X-A": "1"}}
  {"cmd": "hangup", "call": 0}
  {"cmd": "dtmf", "call": 0, "digits": "123", "method": "rfc4733" | "info"}
  {"cmd": "hold", "call": 0} / {"cmd": "unhold", "call": 0}   (re-INVITE with sendonly / sendrecv)
  {"cmd": "quit"}
Events, one JSON object per line on stdout: ready, reg_state, incoming_call, call_state, media_active,
in_dialog_request, recorded, error. Everything here follows the pjsua2 rules of this project: one
Endpoint per process, at most 4 calls, null sound device, noVad, PCMU first, references kept to every
Call/Account/player, recorders released before libDestroy.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import queue
import sys
import threading
import time
import wave

import pjsua2 as pj

# Events go to the original stdout; pjsua's C logging (which writes to fd 1) goes to stderr instead.
EVENTS_OUT = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
sys.stdout = sys.stderr


def emit(event: str, **fields: object) -> None:
    EVENTS_OUT.write(json.dumps({"event": event, "t": time.time(), **fields}) + "\n")
    EVENTS_OUT.flush()


def write_tone(path: str, frequency: float, seconds: float = 2.0, rate: int = 8000) -> None:
    """A looping-friendly sine tone at ``frequency`` (a whole number of cycles)."""
    n = int(rate * seconds)
    with wave.open(path, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        frames = bytearray()
        for i in range(n):
            value = int(8000 * math.sin(2 * math.pi * frequency * i / rate))
            frames += value.to_bytes(2, "little", signed=True)
        out.writeframes(bytes(frames))


class Peer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.ep = pj.Endpoint()
        self.accounts: list[Account] = []
        self.calls: list[Call] = []
        self.players: list[pj.AudioMediaPlayer] = []
        self.recorders: dict[int, pj.AudioMediaRecorder] = {}
        self.tone_file: str | None = None
        self.running = True
        self.commands: queue.Queue[dict] = queue.Queue()
        self.transport_ids: dict[str, int] = {}

    def start(self) -> None:
        self.ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.userAgent = f"pjsua2-peer-{self.args.name}"
        cfg.logConfig.level = int(os.environ.get("PJSUA_LOG_LEVEL", "1"))
        cfg.logConfig.consoleLevel = cfg.logConfig.level
        cfg.medConfig.noVad = True
        cfg.medConfig.clockRate = 8000
        cfg.medConfig.sndClockRate = 8000
        cfg.medConfig.channelCount = 1
        self.ep.libInit(cfg)
        self.ep.audDevManager().setNullDev()
        for codec in self.ep.codecEnum2():
            self.ep.codecSetPriority(codec.codecId, 0)
        self.ep.codecSetPriority("PCMU/8000", 255)
        self.ep.codecSetPriority("PCMA/8000", 254)
        udp = pj.TransportConfig()
        udp.port = self.args.port
        udp.boundAddress = "127.0.0.1"
        self.transport_ids["udp"] = self.ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, udp)
        tcp = pj.TransportConfig()
        tcp.port = 0
        tcp.boundAddress = "127.0.0.1"
        self.transport_ids["tcp"] = self.ep.transportCreate(pj.PJSIP_TRANSPORT_TCP, tcp)
        self.ep.libStart()
        if self.args.tone:
            self.tone_file = os.path.join(self.args.record_dir or ".", f"tone-{self.args.tone}.wav")
            write_tone(self.tone_file, self.args.tone)
        info = self.ep.transportGetInfo(self.transport_ids["udp"])
        port = int(info.localName.rsplit(":", 1)[1])
        emit("ready", port=port)

    # -- commands ---------------------------------------------------------------------------------

    def handle(self, command: dict) -> None:
        name = command.get("cmd")
        if name == "register":
            self.register(command)
        elif name == "unregister":
            for account in self.accounts:
                account.setRegistration(False)
        elif name == "call":
            self.call(command)
        elif name == "hangup":
            call = self.calls[command.get("call", 0)]
            prm = pj.CallOpParam()
            prm.statusCode = command.get("code", 603)
            call.hangup(prm)
        elif name == "dtmf":
            call = self.calls[command.get("call", 0)]
            prm = pj.CallSendDtmfParam()
            prm.digits = command["digits"]
            prm.method = (
                pj.PJSUA_DTMF_METHOD_SIP_INFO if command.get("method") == "info" else pj.PJSUA_DTMF_METHOD_RFC2833
            )
            call.sendDtmf(prm)
        elif name == "listen":  # take calls without registering (a phone behind a trunk)
            self.account(command.get("user", "phone"))
        elif name == "hold":
            self.calls[command.get("call", 0)].setHold(pj.CallOpParam(True))
        elif name == "unhold":
            prm = pj.CallOpParam(True)
            prm.opt.flag = pj.PJSUA_CALL_UNHOLD
            self.calls[command.get("call", 0)].reinvite(prm)
        elif name == "quit":
            self.running = False
        else:
            emit("error", message=f"unknown command {name!r}")

    def account(self, user: str, registrar: str | None = None, password: str = "", transport: str = "udp",
                expires: int = 300) -> Account:
        cfg = pj.AccountConfig()
        host = (registrar or "sip:127.0.0.1").split(":", 1)[1].split(";")[0]
        cfg.idUri = f"sip:{user}@{host.rsplit(':', 1)[0] if host.count(':') == 1 else host}"
        if registrar:
            cfg.regConfig.registrarUri = registrar + (";transport=tcp" if transport == "tcp" else "")
            cfg.regConfig.timeoutSec = expires
            cfg.regConfig.retryIntervalSec = 0
            cfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", user, 0, password))
        else:
            cfg.regConfig.registerOnAdd = False
        cfg.sipConfig.transportId = self.transport_ids[transport]
        cfg.natConfig.sipOutboundUse = 0
        cfg.natConfig.contactRewriteUse = 0
        cfg.natConfig.viaRewriteUse = 0
        cfg.natConfig.sdpNatRewriteUse = 0
        cfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
        account = Account(self)
        account.create(cfg, True)
        self.accounts.append(account)
        return account

    def register(self, command: dict) -> None:
        self.account(command["user"], command["registrar"], command.get("password", ""),
                     command.get("transport", "udp"), command.get("expires", 300))

    def call(self, command: dict) -> None:
        account = self.accounts[0] if self.accounts else self.account(command.get("from_user", "caller"))
        call = Call(self, account)
        self.calls.append(call)
        prm = pj.CallOpParam(True)
        headers = pj.SipHeaderVector()
        for name, value in command.get("headers", {}).items():
            header = pj.SipHeader()
            header.hName = name
            header.hValue = value
            headers.append(header)
        prm.txOption.headers = headers
        call.makeCall(command["uri"], prm)

    # -- media ------------------------------------------------------------------------------------

    def media_active(self, call: Call) -> None:
        index = self.calls.index(call)
        media = call.getAudioMedia(-1)
        if self.args.record_dir and index not in self.recorders:
            path = os.path.join(self.args.record_dir, f"{self.args.name}-call{index}.wav")
            recorder = pj.AudioMediaRecorder()
            recorder.createRecorder(path)
            media.startTransmit(recorder)
            self.recorders[index] = recorder
            call.record_path = path
        if self.tone_file:
            player = pj.AudioMediaPlayer()
            player.createPlayer(self.tone_file, 0)
            player.startTransmit(media)
            self.players.append(player)
        emit("media_active", call=index)

    def release_recorder(self, index: int) -> None:
        recorder = self.recorders.pop(index, None)
        if recorder is not None:
            path = self.calls[index].record_path
            del recorder
            for _ in range(200):  # the WAV header is finalized as the recorder port is torn down
                try:
                    with wave.open(path, "rb") as check:
                        if check.getnframes() > 0:
                            break
                except (wave.Error, EOFError, OSError):
                    pass
                self.ep.libHandleEvents(10)
            emit("recorded", call=index, file=path)

    # -- main loop --------------------------------------------------------------------------------

    def run(self) -> None:
        def read_stdin() -> None:
            for line in sys.stdin:
                line = line.strip()
                if line:
                    try:
                        self.commands.put(json.loads(line))
                    except json.JSONDecodeError:
                        emit("error", message=f"bad command line {line!r}")
            self.commands.put({"cmd": "quit"})

        threading.Thread(target=read_stdin, daemon=True).start()
        while self.running:
            self.ep.libHandleEvents(10)
            while not self.commands.empty():
                try:
                    self.handle(self.commands.get_nowait())
                except pj.Error as exc:
                    emit("error", message=exc.info())
            for index, call in enumerate(self.calls):
                if call.disconnected and index in self.recorders:
                    self.release_recorder(index)
        for index in list(self.recorders):
            self.release_recorder(index)
        self.players.clear()
        self.ep.hangupAllCalls()
        for _ in range(20):
            self.ep.libHandleEvents(10)
        self.ep.libDestroy(pj.PJSUA_DESTROY_NO_NETWORK)


class Account(pj.Account):
    def __init__(self, peer: Peer) -> None:
        super().__init__()
        self.peer = peer

    def onRegState(self, prm: pj.OnRegStateParam) -> None:
        info = self.getInfo()
        emit("reg_state", code=prm.code, reason=prm.reason, active=info.regIsActive, expires=prm.expiration)

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        call = Call(self.peer, self, prm.callId)
        self.peer.calls.append(call)
        index = len(self.peer.calls) - 1
        emit("incoming_call", call=index, message=prm.rdata.wholeMsg)
        answer = pj.CallOpParam()
        answer.statusCode = 180
        call.answer(answer)
        if self.peer.args.auto_answer:
            call.answer_at = self.peer.args.answer_delay
            call.pending_answer = self.peer.args.auto_answer
            threading.Timer(self.peer.args.answer_delay,
                            lambda: self.peer.commands.put({"cmd": "_answer", "call": index})).start()


class Call(pj.Call):
    def __init__(self, peer: Peer, account: Account, call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(account, call_id)
        self.peer = peer
        self.disconnected = False
        self.record_path = ""
        self.pending_answer = 0
        self.answer_at = 0.0

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        info = self.getInfo()
        index = self.peer.calls.index(self)
        emit("call_state", call=index, state=info.stateText, last_status=info.lastStatusCode,
             reason=info.lastReason)
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.disconnected = True

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        info = self.getInfo()
        for media in info.media:
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                self.peer.media_active(self)
                return

    def onCallTsxState(self, prm: pj.OnCallTsxStateParam) -> None:
        event = prm.e.body.tsxState
        tsx = event.tsx
        if tsx.role == pj.PJSIP_ROLE_UAS and tsx.state == pj.PJSIP_TSX_STATE_TRYING:
            emit("in_dialog_request", call=self.peer.calls.index(self), method=tsx.method)

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:
        emit("dtmf", call=self.peer.calls.index(self), digit=prm.digit)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", default="peer")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tone", type=float, default=0.0)
    parser.add_argument("--record-dir", default="")
    parser.add_argument("--auto-answer", type=int, default=0)
    parser.add_argument("--answer-delay", type=float, default=0.5)
    args = parser.parse_args()
    peer = Peer(args)
    original_handle = peer.handle

    def handle(command: dict) -> None:
        if command.get("cmd") == "_answer":
            call = peer.calls[command["call"]]
            if not call.disconnected:
                prm = pj.CallOpParam()
                prm.statusCode = call.pending_answer
                call.answer(prm)
            return
        original_handle(command)

    peer.handle = handle  # type: ignore[method-assign]
    peer.start()
    peer.run()


if __name__ == "__main__":
    main()
