"""The HTTP control API: FastAPI routes (app), tokens (auth), the control-plane contract (control),
the event bus (events) and uvicorn inside the gateway loop (server)."""
