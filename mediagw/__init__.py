"""mediagw: a contact-center SIP media gateway (B2BUA anchoring every call's audio)."""

__version__ = "0.1.0"
