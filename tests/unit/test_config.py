"""Profiles: every shipped profile loads; errors name the file and the key; demo credentials stay local."""
from __future__ import annotations

from pathlib import Path

import pytest

from mediagw.cli import main
from mediagw.config import load_profile, parse_listen_address, with_overrides
from mediagw.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "sip_profiles").glob("*.toml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_profile_loads(path: Path) -> None:
    profile = load_profile(path)
    assert profile.sip.listen_addresses
    assert main(["check", str(path)]) == 0


def test_embedded_default_is_the_shipped_default_and_loopback_only() -> None:
    embedded = load_profile(None)
    shipped = load_profile(ROOT / "sip_profiles" / "default.toml")
    assert embedded.sip == shipped.sip and embedded.agents == shipped.agents
    assert all(address.is_loopback for address in embedded.sip.listen_addresses)
    assert embedded.number("1000") is not None


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ('nmae = "x"\n', "nmae", "unknown key"),
        ("[sip]\nlisten = [\"udp:127.0.0.1\"]\n", "sip.listen[0]", "TRANSPORT:HOST:PORT"),
        ("[sip]\nmax_message_size = \"big\"\n", "sip.max_message_size", "expected an integer"),
        ("[sip.timers]\nt1 = 5.0\nt2 = 1.0\n", "sip.timers", "t1 <= t2"),
        ("[rtp]\nport_min = 30000\nport_max = 20000\n", "rtp", "port_min < port_max"),
        ("[rtp]\naddress = \"not-an-ip\"\n", "rtp.address", "not an IP address"),
        ("[[trunks]]\nname = \"t\"\nsources = [\"10.0.0.0/33\"]\n", "trunks[0].sources[0]", "CIDR"),
        ("[[agents]]\nid = \"a\"\n", "agents[0].password", "is required"),
        ("[[agents]]\nid = \"a\"\npassword = \"x\"\n[[agents]]\nid = \"a\"\npassword = \"y\"\n", "agents[1]", "duplicate"),
        ("[[numbers]]\nnumber = \"1\"\naction = \"fly\"\n", "numbers[0].action", "is not one of"),
        ("[registrar]\nalgorithms = [\"SHA-512\"]\n", "registrar.algorithms[0]", "SHA-256 or MD5"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_profile(path)
    assert caught.value.file == str(path)
    assert caught.value.key == key
    assert fragment in caught.value.message


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[sip\n")
    with pytest.raises(ConfigError, match="invalid TOML") as caught:
        load_profile(path)
    assert str(path) in str(caught.value)


def test_check_command_reports_the_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "[[agents]]\nid = \"a\"\npassword = \"\"\n")
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: agents[0].password: must not be empty" in err


def test_demo_credentials_refused_off_loopback() -> None:
    default = load_profile(None)
    with pytest.raises(ConfigError, match="demo credential") as caught:
        with_overrides(default, listen=["udp:0.0.0.0:5060"])
    assert caught.value.key == "agents[0].password"
    # loopback overrides are fine
    assert with_overrides(default, listen=["udp:127.0.0.2:5070"]).sip.listen == ("udp:127.0.0.2:5070",)


def test_run_refuses_demo_credentials_off_loopback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--sip", "udp:0.0.0.0:5099"]) == 2
    assert "demo credential" in capsys.readouterr().err


def test_listen_address_forms() -> None:
    assert parse_listen_address("tcp:[::1]:5061").host == "::1"
    assert str(parse_listen_address("udp:127.0.0.1:0")) == "udp:127.0.0.1:0"
    with pytest.raises(ValueError):
        parse_listen_address("tls:127.0.0.1:5061")
    with pytest.raises(ValueError):
        parse_listen_address("udp:127.0.0.1:70000")
