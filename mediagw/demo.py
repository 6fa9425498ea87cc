"""The documented demo credentials of the default profile and the README: never valid off loopback."""

DEMO_CREDENTIALS = frozenset(
    {"demo-agent1", "demo-agent2", "demo-supervisor", "demo-trunk", "demo-admin-token", "demo-supervisor-token"}
)
