"""SIPp (Debian sip-tester) scenarios against the gateway on 127.0.0.1."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import GatewayFactory
from tests.integration.harness import GatewayProcess, free_port, require_program

pytestmark = pytest.mark.integration

SCENARIOS = Path(__file__).parent / "sipp"


def run_sipp(gateway: GatewayProcess, scenario: str, workdir: Path, *, service: str = "1000",
             transport: str = "u1", timeout: float = 40.0) -> subprocess.CompletedProcess[str]:
    sipp = require_program("sipp")
    args = [
        sipp, f"127.0.0.1:{gateway.sip_port}", "-sf", str(SCENARIOS / scenario), "-s", service,
        "-i", "127.0.0.1", "-p", str(free_port()), "-mp", str(free_port(both=False) & ~1),
        "-t", transport, "-m", "1", "-l", "1", "-timeout", f"{int(timeout)}s", "-timeout_error",
        "-nostdin", "-trace_err", "-trace_msg",
        "-message_file", str(workdir / f"{scenario}.msg"), "-error_file", str(workdir / f"{scenario}.err"),
    ]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout + 15, cwd=workdir)


def test_options(gateway: GatewayProcess, tmp_path: Path) -> None:
    result = run_sipp(gateway, "options.xml", tmp_path)
    assert result.returncode == 0, (result.stdout[-2000:], (tmp_path / "options.xml.err").read_text(errors="replace")
                                    if (tmp_path / "options.xml.err").exists() else "")


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_invite_ack_bye(gateway: GatewayProcess, tmp_path: Path, transport: str) -> None:
    result = run_sipp(gateway, "uac_invite_bye.xml", tmp_path, transport=transport)
    messages = (tmp_path / "uac_invite_bye.xml.msg").read_text(errors="replace")
    assert result.returncode == 0, messages[-4000:]
    # the answer names the gateway's RTP address and a port from the profile's range
    ok = messages[messages.index("SIP/2.0 200 OK"):]
    answer = re.search(r"m=audio (\d+) RTP/AVP 8", ok)
    assert answer is not None
    rtp_min, rtp_max = gateway_rtp_range(gateway)
    assert rtp_min <= int(answer.group(1)) <= rtp_max and int(answer.group(1)) % 2 == 0


def gateway_rtp_range(gateway: GatewayProcess) -> tuple[int, int]:
    text = (gateway.workdir / "profile.toml").read_text()
    low = re.search(r"port_min = (\d+)", text)
    high = re.search(r"port_max = (\d+)", text)
    assert low and high
    return int(low.group(1)), int(high.group(1))


def test_lost_ack_makes_gateway_retransmit_200_until_timer_h(start_gateway: GatewayFactory, tmp_path: Path) -> None:
    # T1 = 0.1 s: the 200 OK is retransmitted at 0.1, 0.3, 0.7, 1.5, 3.1 s ... and Timer H (64*T1 = 6.4 s)
    # ends the dialog with a BYE (RFC 3261 §13.3.1.4, §17.2.1).
    gateway = start_gateway(overrides={"t1": 0.1, "t2": 1.0})
    result = run_sipp(gateway, "uac_lost_ack.xml", tmp_path, timeout=20)
    messages = (tmp_path / "uac_lost_ack.xml.msg").read_text(errors="replace")
    assert result.returncode == 0, messages[-4000:]
    received_200 = len(re.findall(r"^SIP/2.0 200 OK", messages, flags=re.M))
    assert received_200 >= 5
    assert re.search(r"^BYE sip:", messages, flags=re.M)
