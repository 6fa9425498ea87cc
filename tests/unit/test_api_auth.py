"""API tokens: roles, permissions, constant-time comparison, validation, and keeping tokens out of logs."""
from __future__ import annotations

import hmac
import logging

import pytest

from mediagw.api import auth
from mediagw.api.auth import (
    ALL_PERMISSIONS,
    ROLE_PERMISSIONS,
    ApiConfig,
    ApiToken,
    TokenAuthenticator,
    permissions_for,
    required_permission_for_mode,
    validate_api_config,
)
from mediagw.api.server import (
    RedactSecrets,
    install_log_redaction,
    is_loopback_host,
    parse_api_address,
    redact_secrets,
)
from mediagw.errors import ConfigError

ADMIN = "admin-token-0123456789abcdef"
SUPERVISOR = "supervisor-token-0123456789"
AGENT = "agent-token-0123456789abcdef"

TOKENS = (
    ApiToken("ops", ADMIN, "admin"),
    ApiToken("sup1", SUPERVISOR, "supervisor", supervisor_id="sup1"),
    ApiToken("desk", AGENT, "agent"),
)


def test_role_defaults() -> None:
    assert permissions_for(TOKENS[0]) == ALL_PERMISSIONS
    assert permissions_for(TOKENS[1]) == {"read", "monitor", "coach", "barge", "end_calls"}
    assert permissions_for(TOKENS[2]) == {"read"}
    assert ROLE_PERMISSIONS["admin"] >= {"manage_agents", "recordings", "redact"}


def test_explicit_permissions_replace_the_role_defaults() -> None:
    token = ApiToken("trainee", "x" * 20, "supervisor", supervisor_id="s", permissions=("read", "monitor"))
    assert permissions_for(token) == {"read", "monitor"}
    principal = TokenAuthenticator([token]).authenticate("x" * 20)
    assert principal is not None
    assert principal.has("monitor") and not principal.has("barge")


def test_mode_permissions() -> None:
    assert [required_permission_for_mode(mode) for mode in ("listen", "coach", "barge")] == ["monitor", "coach", "barge"]
    with pytest.raises(ValueError):
        required_permission_for_mode("shout")


def test_authenticate_maps_tokens_to_principals() -> None:
    authenticator = TokenAuthenticator(TOKENS)
    principal = authenticator.authenticate(SUPERVISOR)
    assert principal is not None
    assert (principal.name, principal.role, principal.supervisor_id) == ("sup1", "supervisor", "sup1")
    assert principal.actor == "api:sup1"
    assert not principal.is_admin
    admin = authenticator.authenticate(ADMIN)
    assert admin is not None and admin.is_admin
    for wrong in (None, "", "admin", ADMIN + "x", ADMIN[:-1], ADMIN.upper(), " " + ADMIN, "\u00e9" * 30):
        assert authenticator.authenticate(wrong) is None


@pytest.mark.parametrize("presented", [ADMIN, AGENT, "wrong-token", "w", "x" * 1000])
def test_every_configured_token_is_compared_with_compare_digest(
    monkeypatch: pytest.MonkeyPatch, presented: str
) -> None:
    calls: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    TokenAuthenticator(TOKENS).authenticate(presented)
    # no early exit on a match, and every comparison is over fixed-length digests whatever was presented
    assert calls == [(32, 32)] * len(TOKENS)


def test_authenticator_uses_the_hmac_module() -> None:
    assert auth.hmac is hmac  # compare_digest is looked up at call time, so the test above sees every call


def test_token_hidden_from_repr() -> None:
    token = TOKENS[0]
    assert ADMIN not in repr(token)
    assert ADMIN not in repr(ApiConfig(tokens=TOKENS))
    authenticator = TokenAuthenticator(TOKENS)
    assert ADMIN not in repr(authenticator)
    principal = authenticator.authenticate(ADMIN)
    assert ADMIN not in repr(principal)


# ------------------------------------------------------------------------------------------- validation


def test_valid_config_passes() -> None:
    validate_api_config(ApiConfig(listen="127.0.0.1:8080", tokens=TOKENS), "p.toml")
    validate_api_config(ApiConfig(listen="[::1]:0", tokens=()), "p.toml")


@pytest.mark.parametrize(
    ("config", "key", "text"),
    [
        (ApiConfig(listen="localhost"), "api.listen", "HOST:PORT"),
        (ApiConfig(listen="1.2.3.4:70000"), "api.listen", "out of range"),
        (ApiConfig(tokens=(TOKENS[0], ApiToken("ops", "y" * 20, "agent"))), "api.tokens[1].name", "duplicate"),
        (ApiConfig(tokens=(TOKENS[0], ApiToken("other", ADMIN, "agent"))), "api.tokens[1].token", "twice"),
        (ApiConfig(tokens=(ApiToken("short", "abc", "agent"),)), "api.tokens[0].token", "at least 16"),
        (ApiConfig(tokens=(ApiToken("sp", "has space in it 0123", "agent"),)), "api.tokens[0].token", "spaces"),
        (ApiConfig(tokens=(ApiToken("", "z" * 20, "agent"),)), "api.tokens[0].name", "empty"),
        (
            ApiConfig(tokens=(ApiToken("x", "z" * 20, "agent", permissions=("read", "fly")),)),
            "api.tokens[0].permissions[1]",
            "'fly'",
        ),
        (ApiConfig(tokens=(ApiToken("s", "z" * 20, "supervisor"),)), "api.tokens[0].supervisor_id", "required"),
        (
            ApiConfig(listen="0.0.0.0:8080", tokens=(ApiToken("demo", "demo-admin-token", "admin"),)),
            "api.tokens[0].token",
            "demo",
        ),
    ],
)
def test_invalid_config_names_the_key(config: ApiConfig, key: str, text: str) -> None:
    with pytest.raises(ConfigError) as error:
        validate_api_config(config, "p.toml")
    assert error.value.key == key
    assert text in error.value.message
    assert ADMIN not in str(error.value)


def test_demo_token_allowed_on_loopback() -> None:
    validate_api_config(ApiConfig(tokens=(ApiToken("demo", "demo-admin-token", "admin"),)), "p.toml")


# ------------------------------------------------------------------------------------ addresses and logs


def test_parse_api_address() -> None:
    assert parse_api_address("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_api_address("[::1]:0") == ("::1", 0)
    assert parse_api_address("localhost:9000") == ("localhost", 9000)
    assert ApiConfig().address == ("127.0.0.1", 8080)
    for bad in ("127.0.0.1", ":8080", "::1:8080", "host:port", "h:99999"):
        with pytest.raises(ValueError):
            parse_api_address(bad)
    assert is_loopback_host("127.0.0.1") and is_loopback_host("::1") and is_loopback_host("localhost")
    assert not is_loopback_host("0.0.0.0") and not is_loopback_host("example.com")


def test_redact_secrets() -> None:
    assert redact_secrets(f"/api/v1/events?token={ADMIN}&topics=call") == "/api/v1/events?token=<redacted>&topics=call"
    assert redact_secrets(f"Authorization: Bearer {ADMIN}") == "Authorization: <redacted>"
    assert redact_secrets(f"< authorization: {ADMIN}") == "< authorization: <redacted>"
    assert redact_secrets(f"sent bearer {ADMIN}, then") == "sent bearer <redacted>, then"
    assert redact_secrets("nothing secret") == "nothing secret"


def test_uvicorn_websocket_log_line_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction()
    install_log_redaction()  # idempotent
    uvicorn_logger = logging.getLogger("uvicorn.error")
    assert sum(isinstance(f, RedactSecrets) for f in uvicorn_logger.filters) == 1
    with caplog.at_level(logging.INFO, logger="uvicorn.error"):
        # the line uvicorn's WebSocket protocols log on accept, with the path and its query string
        uvicorn_logger.info('%s - "WebSocket %s" [accepted]', "127.0.0.1:5000", f"/api/v1/events?token={ADMIN}")
    assert "token=<redacted>" in caplog.text
    assert ADMIN not in caplog.text
