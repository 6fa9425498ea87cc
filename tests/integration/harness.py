"""Integration test harness: the gateway and real SIP peers, each in its own process, on 127.0.0.1."""
from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support import unavailable

PEERS_DIR = Path(__file__).parent / "peers"


def require_program(name: str) -> str:
    """The path of an external peer program; skip (locally) or fail (CI) when it is missing."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed (make test installs it)")
    return path


def require_module(name: str) -> None:
    """Import check for a Python peer; skip locally, fail in CI."""
    try:
        __import__(name)
    except ImportError:
        unavailable(f"Python module {name} is not installed (make test installs it)")


def free_port(kind: int = socket.SOCK_DGRAM, both: bool = True) -> int:
    """A port free for UDP (and TCP when ``both``) on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if not both:
            return port
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp, socket.socket(
                socket.AF_INET, socket.SOCK_DGRAM
            ) as udp:
                tcp.bind(("127.0.0.1", port))
                udp.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair found")


def free_rtp_range(size: int = 40) -> tuple[int, int]:
    """An even-aligned UDP port range of ``size`` ports not in use right now."""
    for _ in range(50):
        base = free_port(both=False) & ~1
        if base + size > 65000 or base < 10000:
            continue
        sockets = []
        try:
            for port in range(base, base + size):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base, base + size - 1
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free RTP range found")


class EventStream:
    """JSON-line events read from a process's stdout on a thread, waited on with timeouts."""

    def __init__(self, process: subprocess.Popen[str], name: str) -> None:
        self.process = process
        self.name = name
        self.events: list[dict[str, Any]] = []
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            self.events.append(event)
            self._queue.put(event)

    def wait_for(
        self, event: str, predicate: Callable[[dict[str, Any]], bool] | None = None, timeout: float = 10.0
    ) -> dict[str, Any]:
        """The first event named ``event`` (matching ``predicate``), seen before or after this call."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for item in self.events[seen:]:
                seen += 1
                if item.get("event") == event and (predicate is None or predicate(item)):
                    return item
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.name}: no {event!r} event within {timeout}s; saw {self.events}")
            try:
                self._queue.get(timeout=min(remaining, 0.1))
            except queue.Empty:
                if self.process.poll() is not None and self._queue.empty() and seen >= len(self.events):
                    raise AssertionError(
                        f"{self.name} exited ({self.process.returncode}) before {event!r}; saw {self.events}"
                    ) from None


class PjsuaPeer:
    """A pjsua2 user agent in its own process (tests/integration/peers/pjsua_peer.py)."""

    def __init__(self, name: str, workdir: Path, *, tone: float = 0.0, auto_answer: int = 0,
                 answer_delay: float = 0.5, record: bool = False, log_level: int = 1) -> None:
        require_module("pjsua2")
        self.name = name
        self.workdir = workdir
        args = [sys.executable, str(PEERS_DIR / "pjsua_peer.py"), "--name", name]
        if tone:
            args += ["--tone", str(tone)]
        if record or tone:
            args += ["--record-dir", str(workdir)]
        if auto_answer:
            args += ["--auto-answer", str(auto_answer), "--answer-delay", str(answer_delay)]
        self.log_path = workdir / f"{name}.log"
        self.stderr = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "PJSUA_LOG_LEVEL": str(log_level)}
        self.process = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True, cwd=workdir,
            env=env,
        )
        self.events = EventStream(self.process, name)
        self.port = int(self.events.wait_for("ready", timeout=20)["port"])

    def send(self, **command: Any) -> None:
        """Send one command to the peer."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def wait_for(self, event: str, predicate: Callable[[dict[str, Any]], bool] | None = None,
                 timeout: float = 10.0) -> dict[str, Any]:
        return self.events.wait_for(event, predicate, timeout)

    def read_log(self) -> str:
        """What pjsua logged (messages in and out at log level 5)."""
        self.stderr.flush()
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 5.0) -> None:
        """Wait until pjsua's log holds ``text`` (its C logging is block-buffered, so poll)."""
        deadline = time.monotonic() + timeout
        while text not in self.read_log():
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: {text!r} not in its log within {timeout}s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.send(cmd="quit")
                self.process.wait(timeout=10)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self.stderr.close()


DEFAULT_PROFILE = Path(__file__).resolve().parents[2] / "sip_profiles" / "default.toml"


def write_profile(path: Path, *, sip_port: int, rtp_range: tuple[int, int], extra: str = "",
                  trunk_sources: tuple[str, ...] = ("127.0.0.0/8",), numbers: str | None = None,
                  overrides: dict[str, object] | None = None, api_port: int = 0) -> Path:
    """The shipped default profile on free ports, with test passwords and the given changes.

    Tests run against the demo center users get (its numbers, queue and agents); ``overrides`` replaces
    the value of the first ``key = value`` line of each key, ``numbers`` replaces every ``[[numbers]]``
    table, and ``extra`` is appended.
    """
    text = DEFAULT_PROFILE.read_text()
    values: dict[str, object] = {
        "listen": [f"udp:127.0.0.1:{sip_port}", f"tcp:127.0.0.1:{sip_port}"],
        "data_dir": str(path.parent / "data"),
        "log_level": "DEBUG",
        "port_min": rtp_range[0],
        "port_max": rtp_range[1],
        "drain_timeout": 5.0,
        "sources": list(trunk_sources),
        **(overrides or {}),
    }
    for key, value in values.items():
        pattern = re.compile(rf"^{re.escape(key)} = .*$", flags=re.M)
        assert pattern.search(text), f"the default profile has no {key!r} line"
        text = pattern.sub(f"{key} = {json.dumps(value)}", text, count=1)
    text = text.replace('"demo-', '"secret-')
    assert 'listen = "127.0.0.1:8080"' in text, "the default profile's API address moved"
    text = text.replace('listen = "127.0.0.1:8080"', f'listen = "127.0.0.1:{api_port}"')
    if numbers is not None:
        text = text[: text.index("[[numbers]]")] + numbers
    path.write_text(text + "\n" + extra)
    return path


class GatewayProcess:
    """``mediagw run`` in its own process on a test profile."""

    def __init__(self, workdir: Path, profile: Path, sip_port: int, api_port: int = 0) -> None:
        self.workdir = workdir
        self.sip_port = sip_port
        self.api_port = api_port
        self.api_url = f"http://127.0.0.1:{api_port}"
        self.log_path = workdir / "gateway.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mediagw", "run", "--profile", str(profile)],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=workdir,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"gateway exited with {self.process.returncode}:\n{self.read_log()}")
            if "gateway ready" in self.read_log():
                return
            time.sleep(0.05)
        raise AssertionError(f"gateway not ready within {timeout}s:\n{self.read_log()}")

    def read_log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Signal the gateway and return its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode


def sip_exchange(data: bytes, port: int, *, timeout: float = 2.0, count: int = 1,
                 transport: str = "udp") -> list[bytes]:
    """Send raw SIP bytes to the gateway and collect up to ``count`` replies."""
    replies: list[bytes] = []
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.settimeout(timeout)
        sock.bind(("127.0.0.1", 0))
        if transport == "udp":
            sock.sendto(data, ("127.0.0.1", port))
        else:
            sock.connect(("127.0.0.1", port))
            sock.sendall(data)
        deadline = time.monotonic() + timeout
        buffer = b""
        while len(replies) < count and time.monotonic() < deadline:
            try:
                chunk = sock.recv(65535)
            except (TimeoutError, socket.timeout):
                break
            if not chunk:
                break
            if transport == "udp":
                replies.append(chunk)
            else:
                buffer += chunk
                while b"\r\n\r\n" in buffer:
                    head, _, rest = buffer.partition(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith((b"content-length:", b"l:")):
                            length = int(line.split(b":", 1)[1])
                    if len(rest) < length:
                        break
                    replies.append(head + b"\r\n\r\n" + rest[:length])
                    buffer = rest[length:]
    return replies
