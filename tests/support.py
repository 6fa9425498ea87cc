"""What a test does when the machine lacks something it needs: skip on a laptop, fail in CI."""
from __future__ import annotations

import os
from typing import NoReturn

import pytest

REQUIRE_PEERS = os.environ.get("MEDIAGW_REQUIRE_PEERS") == "1"
"""Set by .ci/run: CI installs every peer and tool the tests use, so nothing may be skipped there."""


def unavailable(message: str, *, module_level: bool = False) -> NoReturn:
    """Skip (locally) or fail (CI) because ``message`` names something missing."""
    if REQUIRE_PEERS:
        pytest.fail(message)
    pytest.skip(message, allow_module_level=module_level)
