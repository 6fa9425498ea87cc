"""The mediagw store: SQLAlchemy 2 async models (:mod:`.models`) and the engine/session factory (:mod:`.db`)."""
