"""baresip (Debian ``baresip-core`` 1.0.0) as a second real softphone for integration tests.

:class:`BaresipPeer` runs ``baresip -f DIR`` on a private config directory (``config``, ``accounts``,
``contacts``) and drives it over the ``ctrl_tcp`` module: netstring-framed JSON commands
(``{"command": "dial", "params": "sip:...", "token": "7"}``) in, responses and events out.

What baresip-core 1.0.0 offers here for audio without a sound card:

- source: ``aufile`` plays a WAV file (S16LE, mono, at the codec rate: 8 kHz for G.711) once; it does
  not loop, and at its end baresip stops sending RTP. :func:`write_tone` therefore writes a tone long
  enough for a test (60 s by default). Without ``tone_file`` the source is two minutes of silence, so
  RTP still flows both ways.
- player: there is no file player in 1.0.0 (``aufile`` is a source only). ``aubridge`` is used as a
  device-free player, and the ``sndfile`` audio filter dumps what the peer sends and hears to
  ``dump-<time>-enc.wav`` / ``dump-<time>-dec.wav`` in ``record_dir`` (written by libsndfile, complete
  once the call is closed). :meth:`BaresipPeer.recorded` returns the ``-dec`` file: what the peer heard.
- codecs: the ``g711`` module only, PCMU first (``audio_codecs=PCMU,PCMA`` on every account).

Events are the ctrl_tcp events with the baresip type lower-cased as ``event`` (``register_ok``,
``register_fail``, ``call_incoming``, ``call_ringing``, ``call_progress``, ``call_established``,
``call_closed``, ...), plus ``code`` (the SIP status at the start of ``param`` when there is one), and
``response`` for command replies.
"""
from __future__ import annotations

import itertools
import json
import queue
import re
import socket
import subprocess
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tests.integration.harness import free_port, free_rtp_range, require_program

MODULE_PATH = Path("/usr/lib/baresip/modules")
RATE = 8000
# One message of baresip's SIP trace (-s): "#", "UDP src -> dst", the message, in ANSI colour codes.
SIP_TRACE = re.compile(r"#\n(UDP|TCP|TLS) (\S+) -> (\S+)\n(.*?)\x1b\[;m", re.DOTALL)


def write_tone(path: Path, frequency: float, seconds: float = 60.0, rate: int = RATE,
               amplitude: int = 8000) -> Path:
    """A mono S16LE WAV at ``rate`` holding a sine at ``frequency`` (silence when 0) for ``seconds``."""
    t = np.arange(int(rate * seconds)) / rate
    samples = (amplitude * np.sin(2 * np.pi * frequency * t)).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


def free_sip_port() -> int:
    """A port free for SIP over UDP and TCP whose next port is free for TCP too: baresip always listens
    for SIP/TLS on the port after ``sip_listen``'s."""
    for _ in range(50):
        port = free_port()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tls:
                tls.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no free SIP port with a free TLS port after it")


def netstring(payload: bytes) -> bytes:
    return str(len(payload)).encode() + b":" + payload + b","


def status_code(param: object) -> int | None:
    """The SIP status at the start of an event parameter such as ``"401 Unauthorized"``."""
    if not isinstance(param, str):
        return None
    head = param.strip().split(" ", 1)[0]
    return int(head) if head.isdigit() and len(head) == 3 else None


class BaresipPeer:
    """A baresip user agent in its own process on 127.0.0.1, driven over ctrl_tcp."""

    def __init__(self, name: str, workdir: Path, *, tone_file: Path | None = None,
                 record_dir: Path | None = None, auto_answer: bool = False,
                 sip_trace: bool = True) -> None:
        self.program = require_program("baresip")
        missing = [m for m in ("g711", "aufile", "aubridge", "ctrl_tcp", "menu", "account", "contact")
                   + (("sndfile",) if record_dir else ()) if not (MODULE_PATH / f"{m}.so").exists()]
        if missing:
            raise RuntimeError(f"baresip modules missing in {MODULE_PATH}: {missing}")
        self.name = name
        self.workdir = workdir
        self.confdir = workdir / f"baresip-{name}"
        self.confdir.mkdir(parents=True, exist_ok=True)
        self.record_dir = record_dir
        if record_dir is not None:
            record_dir.mkdir(parents=True, exist_ok=True)
        if tone_file is None:
            tone_file = write_tone(self.confdir / "silence.wav", 0.0, seconds=120.0)
        self.tone_file = tone_file
        self.auto_answer = auto_answer
        self.aor = f"sip:{name}@127.0.0.1"
        self.events: list[dict[str, Any]] = []
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self._tokens = itertools.count(1)
        self.log_path = workdir / f"{name}.baresip.log"
        self._args = [self.program, "-f", str(self.confdir)] + (["-s"] if sip_trace else [])
        self._modules = ["g711", "aufile", "aubridge"] + (["sndfile"] if record_dir else [])
        # Ports are picked free, but another process may take one before baresip binds it; baresip then
        # exits (SIP) or runs without ctrl_tcp. Both show in its log before "baresip is ready.": retry.
        for attempt in range(5):
            self._start()
            if self._wait_ready(last=attempt == 4):
                break
        try:
            self._sock = self._connect()
        except BaseException:
            self.process.kill()
            self.process.wait()
            self._log.close()
            raise
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _write_config(self) -> None:
        answer = ";answermode=auto" if self.auto_answer else ""
        lines = [
            "poll_method\t\tepoll",
            f"sip_listen\t\t127.0.0.1:{self.sip_port}",
            "sip_trans_def\t\tudp",
            "net_interface\t\t127.0.0.1",
            f"audio_source\t\taufile,{self.tone_file}",
            f"audio_player\t\taubridge,play-{self.name}",
            f"audio_alert\t\taubridge,alert-{self.name}",
            f"rtp_ports\t\t{self.rtp_ports[0]}-{self.rtp_ports[1]}",
            "rtcp_mux\t\tno",
            f"module_path\t\t{MODULE_PATH}",
            *[f"module\t\t\t{m}.so" for m in self._modules],
            "module_app\t\taccount.so",
            "module_app\t\tcontact.so",
            "module_app\t\tmenu.so",
            "module_app\t\tctrl_tcp.so",
            f"ctrl_tcp_listen\t\t127.0.0.1:{self.ctrl_port}",
        ]
        if self.record_dir is not None:
            lines.append(f"snd_path\t\t{self.record_dir}")
        (self.confdir / "config").write_text("\n".join(lines) + "\n")
        # The local account places calls as a trunk would (no REGISTER); register() adds agents.
        (self.confdir / "accounts").write_text(f"<{self.aor}>;regint=0;audio_codecs=PCMU,PCMA{answer}\n")
        (self.confdir / "contacts").write_text("")

    def _start(self) -> None:
        self.sip_port = free_sip_port()
        self.ctrl_port = free_port(socket.SOCK_STREAM, both=False)
        while self.ctrl_port in (self.sip_port, self.sip_port + 1):
            self.ctrl_port = free_port(socket.SOCK_STREAM, both=False)
        self.rtp_ports = free_rtp_range(20)
        self._write_config()
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(self._args, stdin=subprocess.DEVNULL, stdout=self._log,
                                        stderr=subprocess.STDOUT, cwd=self.workdir)

    def _wait_ready(self, *, last: bool, timeout: float = 10.0) -> bool:
        """True once baresip is ready with its ports; False (process stopped) to retry on a port clash."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.read_log()
            clash = "Address already in use" in log
            if "baresip is ready." in log and not clash:
                return True
            if clash or self.process.poll() is not None:
                if not clash or last:
                    self.process.kill()
                    self.process.wait()
                    raise AssertionError(f"{self.name}: baresip failed to start "
                                         f"({self.process.returncode}):\n{log}")
                self.process.kill()
                self.process.wait()
                self._log.close()
                return False
            if time.monotonic() > deadline:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"{self.name}: baresip not ready within {timeout}s:\n{log}")
            time.sleep(0.05)

    # ---- control channel -------------------------------------------------------------------------

    def _connect(self, timeout: float = 10.0) -> socket.socket:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name}: baresip exited ({self.process.returncode}):\n{self.read_log()}")
            try:
                return socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=1.0)
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{self.name}: ctrl_tcp not listening within {timeout}s:\n"
                                         f"{self.read_log()}") from None
                time.sleep(0.05)

    def _read(self) -> None:
        self._sock.settimeout(None)
        buffer = b""
        while True:
            try:
                chunk = self._sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            buffer += chunk
            while b":" in buffer:
                length_text, _, rest = buffer.partition(b":")
                if not length_text.isdigit():
                    buffer = b""  # out of sync: drop what we have
                    break
                length = int(length_text)
                if len(rest) < length + 1:
                    break
                payload, buffer = rest[:length], rest[length + 1:]
                self._deliver(payload)
        self._queue.put({"event": "_closed"})

    def _deliver(self, payload: bytes) -> None:
        try:
            message = json.loads(payload)
        except json.JSONDecodeError:
            return
        if message.get("response"):
            event = {"event": "response", **message}
        elif message.get("event"):
            event = {**message, "event": str(message.get("type", "")).lower(),
                     "code": status_code(message.get("param"))}
        else:
            return
        self.events.append(event)
        self._queue.put(event)

    def command(self, command: str, params: str = "", *, timeout: float = 5.0) -> dict[str, Any]:
        """Run one baresip command (``dial``, ``hangup``, ``accept``, ``uanew``, ``quit`` ...); its response."""
        token = str(next(self._tokens))
        body = json.dumps({"command": command, "params": params, "token": token}).encode()
        self._sock.sendall(netstring(body))
        return self.wait_for("response", lambda e: e.get("token") == token, timeout=timeout)

    def wait_for(self, event: str | tuple[str, ...], predicate: Callable[[dict[str, Any]], bool] | None = None,
                 timeout: float = 10.0) -> dict[str, Any]:
        """The first event named ``event`` (or any of several names, matching ``predicate``), seen before
        or after this call."""
        names = (event,) if isinstance(event, str) else event
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for item in self.events[seen:]:
                seen += 1
                if item.get("event") in names and (predicate is None or predicate(item)):
                    return item
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.name}: no {event!r} event within {timeout}s; saw {self.events}\n"
                                     f"baresip log tail:\n{self.read_log()[-3000:]}")
            try:
                self._queue.get(timeout=min(remaining, 0.1))
            except queue.Empty:
                pass
            if self.process.poll() is not None and seen >= len(self.events):
                raise AssertionError(f"{self.name}: baresip exited ({self.process.returncode}) before "
                                     f"{event!r}; saw {self.events}\n{self.read_log()[-3000:]}")

    # ---- user agent actions ----------------------------------------------------------------------

    def register(self, registrar_port: int, user: str, password: str, *, expires: int = 300,
                 host: str = "127.0.0.1") -> str:
        """Add a user agent for ``user`` that REGISTERs with digest auth; its AOR (the event's accountaor)."""
        aor = f"sip:{user}@{host}:{registrar_port}"
        answer = ";answermode=auto" if self.auto_answer else ""
        self.command("uanew", f"<{aor};transport=udp>;auth_user={user};auth_pass={password};"
                              f"regint={expires};audio_codecs=PCMU,PCMA{answer}")
        return aor

    def unregister(self, aor: str) -> None:
        """Remove the user agent for ``aor`` (baresip un-REGISTERs it)."""
        self.command("uadel", aor)

    def dial(self, uri: str) -> dict[str, Any]:
        return self.command("dial", uri)

    def hangup(self) -> dict[str, Any]:
        return self.command("hangup")

    def answer(self) -> dict[str, Any]:
        return self.command("accept")

    # ---- logs and recordings ---------------------------------------------------------------------

    def read_log(self) -> str:
        """What baresip printed (with the SIP trace when ``sip_trace``)."""
        try:
            self._log.flush()
        except ValueError:
            pass
        return self.log_path.read_text(errors="replace")

    def sip_messages(self) -> list[dict[str, str]]:
        """The SIP trace (``sip_trace``): each message with ``transport``, ``src``, ``dst``, ``first_line``
        and ``text``, in the order baresip printed them."""
        return [
            {"transport": m[1], "src": m[2], "dst": m[3], "first_line": m[4].split("\r\n", 1)[0],
             "text": m[4]}
            for m in SIP_TRACE.finditer(self.read_log())
        ]

    def wait_for_sip(self, predicate: Callable[[dict[str, str]], bool], timeout: float = 5.0) -> dict[str, str]:
        """The first traced SIP message matching ``predicate`` (the log is written as baresip goes)."""
        deadline = time.monotonic() + timeout
        while True:
            found = next((m for m in self.sip_messages() if predicate(m)), None)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no such SIP message within {timeout}s; saw "
                                     f"{[m['first_line'] for m in self.sip_messages()]}")
            time.sleep(0.05)

    def recordings(self, kind: str = "dec") -> list[Path]:
        """The sndfile dumps in ``record_dir``: ``dec`` is what the peer heard, ``enc`` what it sent."""
        if self.record_dir is None:
            return []
        return sorted(self.record_dir.glob(f"dump-*-{kind}.wav"), key=lambda p: p.stat().st_mtime)

    def recorded(self, kind: str = "dec", timeout: float = 5.0) -> Path:
        """The newest complete dump of ``kind``; call after ``call_closed`` (libsndfile finishes it then)."""
        deadline = time.monotonic() + timeout
        while True:
            files = self.recordings(kind)
            if files:
                path = files[-1]
                try:
                    with wave.open(str(path), "rb") as wav:
                        if wav.getnframes() > 0:
                            return path
                except (wave.Error, EOFError):
                    pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no complete {kind} recording in {self.record_dir}: {files}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                token = str(next(self._tokens))
                self._sock.sendall(netstring(json.dumps({"command": "quit", "token": token}).encode()))
                self.process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.process.terminate()
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        try:
            self._sock.close()
        except OSError:
            pass
        if not self._log.closed:
            self._log.close()
