"""The HTTP control API: FastAPI routes over the gateway's ``ControlPlane``.

Theory of operation: ``create_app(control, tokens)`` builds one FastAPI application. Every route under
``/api/v1`` needs a bearer token (``Authorization: Bearer TOKEN``; the ``HTTPBearer`` scheme in OpenAPI);
``mediagw.api.auth`` turns it into a ``Principal`` and each route checks one permission before it calls the
control plane, so a refused request changes nothing. Errors of every kind, FastAPI's own included (422
validation, 404 unknown route, 405) and unexpected exceptions (500, traceback only in the log), are JSON
``{"error": {"status": N, "message": "..."}}``. Requests are logged by path, status and token *name*;
query strings and headers are never logged. ``WS /api/v1/events`` streams the ``EventBus``; browsers
cannot set headers on a WebSocket, so it also accepts ``?token=``.
"""
from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from http import HTTPStatus
from pathlib import Path as FilePath
from typing import Annotated, Any, TypeVar

import anyio
import pydantic
from fastapi import (
    APIRouter,
    Depends,
    FastAPI,
    Path,
    Query,
    Request,
    Security,
    WebSocket,
    WebSocketDisconnect,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mediagw.api.auth import (
    MODE_PERMISSIONS,
    ApiToken,
    Principal,
    TokenAuthenticator,
)
from mediagw.api.control import (
    AgentStateRequest,
    AgentView,
    CallView,
    ChangeMonitorRequest,
    Conflict,
    ContactView,
    ControlError,
    ControlPlane,
    EndCallResult,
    ErrorResponse,
    MonitorView,
    NotFound,
    QueueView,
    RecordingStateResult,
    RecordingView,
    StartMonitorRequest,
    chunk_media_type,
    error_payload,
)
from mediagw.api.events import CLOSE_POLICY_VIOLATION, EventBus, Subscription
from mediagw.errors import MediagwError, http_status_for
from mediagw.router.core import IllegalTransition

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("mediagw.api.access")

API_PREFIX = "/api/v1"
API_VERSION = "1.0.0"
MAX_ID_LENGTH = 256
MAX_CHUNK_INDEX = 999_999
INTERNAL_ERROR_MESSAGE = "internal error; the gateway log has the details"

T = TypeVar("T")

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="A token from the profile's [api] section: Authorization: Bearer TOKEN",
)


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error replies a route can give, all with the ``ErrorResponse`` body."""
    descriptions = {
        400: "invalid request",
        401: "missing or invalid bearer token",
        403: "the token lacks the permission",
        404: "not found",
        409: "the object is in a state that does not allow this",
        422: "invalid parameters or body",
    }
    return {code: {"model": ErrorResponse, "description": descriptions[code]} for code in codes}


def _error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_payload(status, message), status_code=status, headers=dict(headers or {}))


# -------------------------------------------------------------------------------------------- dependencies


def _unauthorized(message: str, error: str | None = None) -> HTTPException:
    challenge = f'Bearer error="{error}"' if error else "Bearer"
    return HTTPException(401, message, headers={"WWW-Authenticate": challenge})


def _principal_of(request: Request, presented: str | None) -> Principal:
    """Authenticate ``presented``; raises 401. Remembers the principal's name for the access log."""
    authenticator: TokenAuthenticator = request.app.state.auth
    if not presented:
        raise _unauthorized("missing bearer token: send the header 'Authorization: Bearer TOKEN'")
    principal = authenticator.authenticate(presented)
    if principal is None:
        raise _unauthorized("invalid bearer token", "invalid_token")
    request.scope.setdefault("state", {})["mediagw_principal"] = principal.name
    return principal


async def authenticated(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
) -> Principal:
    """FastAPI dependency: the principal of the request's bearer token, else 401."""
    return _principal_of(request, credentials.credentials if credentials is not None else None)


def require(permission: str) -> Callable[..., Awaitable[Principal]]:
    """FastAPI dependency factory: the principal, provided it holds ``permission`` (else 403)."""

    async def dependency(principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
        check_permission(principal, permission)
        return principal

    dependency.__name__ = f"require_{permission}"
    return dependency


def check_permission(principal: Principal, permission: str) -> None:
    """Raise 403 unless ``principal`` holds ``permission``."""
    if not principal.has(permission):
        raise HTTPException(403, f"token {principal.name!r} lacks the {permission!r} permission")


def _check_supervisor(principal: Principal, supervisor_id: str, what: str) -> None:
    """Raise 403 unless ``principal`` is an admin or acts as ``supervisor_id`` itself."""
    if principal.is_admin:
        return
    if not principal.supervisor_id:
        raise HTTPException(403, f"token {principal.name!r} names no supervisor, so it cannot {what}")
    if principal.supervisor_id != supervisor_id:
        raise HTTPException(
            403, f"token {principal.name!r} acts as supervisor {principal.supervisor_id!r} and cannot {what}"
        )


async def _control(awaitable: Awaitable[T]) -> T:
    """Await a control-plane call, turning its documented refusals into API errors."""
    try:
        return await awaitable
    except IllegalTransition as exc:
        raise Conflict(str(exc)) from exc
    except pydantic.ValidationError:
        raise  # the control plane built an invalid model: our bug, a 500
    except ValueError as exc:
        raise ControlError(str(exc)) from exc


def control_of(request: Request) -> ControlPlane:
    """FastAPI dependency: the gateway's control plane."""
    plane: ControlPlane = request.app.state.control
    return plane


Id = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH)]
Read = Annotated[Principal, Depends(require("read"))]
Control = Annotated[ControlPlane, Depends(control_of)]


# ----------------------------------------------------------------------------------------------- routes


def _build_router() -> APIRouter:
    """The ``/api/v1`` routes; they find the control plane on ``request.app.state.control``."""
    router = APIRouter(prefix=API_PREFIX)

    @router.get("/calls", tags=["calls"], response_model=list[CallView], responses=_errors(401, 403))
    async def list_calls(principal: Read, control: Control) -> list[CallView]:
        """Calls in progress: queued, ringing and connected, with wait and talk time and who monitors."""
        return await _control(control.list_calls())

    @router.get("/calls/{call_id}", tags=["calls"], response_model=CallView, responses=_errors(401, 403, 404, 422))
    async def get_call(call_id: Id, principal: Read, control: Control) -> CallView:
        """One call in progress."""
        return await _control(control.get_call(call_id))

    @router.post(
        "/calls/{call_id}/monitors",
        tags=["monitoring"],
        status_code=201,
        response_model=MonitorView,
        responses=_errors(400, 401, 403, 404, 409, 422),
    )
    async def start_monitor(
        call_id: Id,
        body: StartMonitorRequest,
        principal: Annotated[Principal, Depends(authenticated)],
        control: Control,
    ) -> MonitorView:
        """Join a supervisor's phone to a call in a mode (listen needs ``monitor``, coach ``coach``, barge
        ``barge``). A non-admin token may only monitor as its own supervisor id."""
        check_permission(principal, MODE_PERMISSIONS[body.mode])
        _check_supervisor(principal, body.supervisor_id, f"monitor as {body.supervisor_id!r}")
        monitor = await _control(control.start_monitor(call_id, body.supervisor_id, body.mode, principal.actor))
        logger.info("%s started %s monitor %s on call %s", principal.actor, body.mode, monitor.monitor_id, call_id)
        return monitor

    async def owned_monitor(control: ControlPlane, principal: Principal, call_id: str, monitor_id: str) -> MonitorView:
        call = await _control(control.get_call(call_id))
        for monitor in call.monitors:
            if monitor.monitor_id == monitor_id:
                _check_supervisor(principal, monitor.supervisor_id, f"change {monitor.supervisor_id!r}'s monitor")
                return monitor
        raise NotFound(f"call {call_id!r} has no monitor {monitor_id!r}")

    @router.patch(
        "/calls/{call_id}/monitors/{monitor_id}",
        tags=["monitoring"],
        response_model=MonitorView,
        responses=_errors(400, 401, 403, 404, 409, 422),
    )
    async def change_monitor(
        call_id: Id,
        monitor_id: Id,
        body: ChangeMonitorRequest,
        principal: Annotated[Principal, Depends(authenticated)],
        control: Control,
    ) -> MonitorView:
        """Change a monitor's mode; needs the permission of the new mode. The agent is not signalled."""
        check_permission(principal, MODE_PERMISSIONS[body.mode])
        await owned_monitor(control, principal, call_id, monitor_id)
        monitor = await _control(control.change_monitor(call_id, monitor_id, body.mode, principal.actor))
        logger.info("%s changed monitor %s on call %s to %s", principal.actor, monitor_id, call_id, body.mode)
        return monitor

    @router.delete(
        "/calls/{call_id}/monitors/{monitor_id}",
        tags=["monitoring"],
        status_code=204,
        response_class=Response,
        responses=_errors(400, 401, 403, 404, 409, 422),
    )
    async def stop_monitor(
        call_id: Id,
        monitor_id: Id,
        principal: Annotated[Principal, Depends(authenticated)],
        control: Control,
    ) -> Response:
        """Stop a monitor leg; needs any of ``monitor``, ``coach``, ``barge``. The call goes on."""
        if not any(principal.has(permission) for permission in MODE_PERMISSIONS.values()):
            check_permission(principal, "monitor")
        await owned_monitor(control, principal, call_id, monitor_id)
        await _control(control.stop_monitor(call_id, monitor_id, principal.actor))
        logger.info("%s stopped monitor %s on call %s", principal.actor, monitor_id, call_id)
        return Response(status_code=204)

    @router.post(
        "/calls/{call_id}/end",
        tags=["calls"],
        response_model=EndCallResult,
        responses=_errors(400, 401, 403, 404, 409, 422),
    )
    async def end_call(
        call_id: Id, principal: Annotated[Principal, Depends(require("end_calls"))], control: Control
    ) -> EndCallResult:
        """End a call: both legs get BYE; the contact's disconnect reason is 'ended by supervisor'."""
        reason = await _control(control.end_call(call_id, principal.actor))
        logger.info("%s ended call %s (%s)", principal.actor, call_id, reason)
        return EndCallResult(call_id=call_id, disconnect_reason=reason)

    @router.post(
        "/calls/{call_id}/recording/pause",
        tags=["recordings"],
        response_model=RecordingStateResult,
        responses=_errors(400, 401, 403, 404, 409, 422),
    )
    async def pause_recording(
        call_id: Id, principal: Annotated[Principal, Depends(require("redact"))], control: Control
    ) -> RecordingStateResult:
        """Pause the call's recording (redaction, e.g. while a card number is read out)."""
        state = await _control(control.pause_recording(call_id, principal.actor))
        logger.info("%s paused the recording of call %s", principal.actor, call_id)
        return RecordingStateResult(call_id=call_id, recording=state)

    @router.post(
        "/calls/{call_id}/recording/resume",
        tags=["recordings"],
        response_model=RecordingStateResult,
        responses=_errors(400, 401, 403, 404, 409, 422),
    )
    async def resume_recording(
        call_id: Id, principal: Annotated[Principal, Depends(require("redact"))], control: Control
    ) -> RecordingStateResult:
        """Resume the call's paused recording."""
        state = await _control(control.resume_recording(call_id, principal.actor))
        logger.info("%s resumed the recording of call %s", principal.actor, call_id)
        return RecordingStateResult(call_id=call_id, recording=state)

    @router.get(
        "/contacts/{contact_id}", tags=["contacts"], response_model=ContactView, responses=_errors(401, 403, 404, 422)
    )
    async def get_contact(contact_id: Id, principal: Read, control: Control) -> ContactView:
        """One contact record, in progress or finished."""
        return await _control(control.get_contact(contact_id))

    @router.get(
        "/contacts/{contact_id}/recordings",
        tags=["recordings"],
        response_model=list[RecordingView],
        responses=_errors(401, 403, 404, 422),
    )
    async def list_recordings(
        contact_id: Id, principal: Annotated[Principal, Depends(require("recordings"))], control: Control
    ) -> list[RecordingView]:
        """A contact's recordings, each with its chunks in order and its export state."""
        return await _control(control.list_recordings(contact_id))

    @router.get(
        "/recordings/{recording_id}/chunks/{index}",
        tags=["recordings"],
        response_class=FileResponse,
        responses={
            200: {
                "description": "the chunk, a standalone playable file",
                "content": {
                    media: {"schema": {"type": "string", "format": "binary"}}
                    for media in ("audio/wav", "audio/ogg", "application/octet-stream")
                },
            },
            **_errors(401, 403, 404, 422),
        },
    )
    async def read_chunk(
        recording_id: Id,
        index: Annotated[int, Path(ge=0, le=MAX_CHUNK_INDEX)],
        principal: Annotated[Principal, Depends(require("recordings"))],
        control: Control,
    ) -> FileResponse:
        """One chunk of a recording, while it is still stored on this gateway."""
        path = FilePath(await _control(control.read_chunk(recording_id, index)))
        if not path.is_file():
            raise NotFound(f"chunk {index} of recording {recording_id!r} is no longer stored here")
        logger.info("%s downloaded chunk %d of recording %s", principal.actor, index, recording_id)
        return FileResponse(path, media_type=chunk_media_type(path), filename=path.name)

    @router.get("/agents", tags=["agents"], response_model=list[AgentView], responses=_errors(401, 403))
    async def list_agents(principal: Read, control: Control) -> list[AgentView]:
        """Every agent with its state, since when, and its current call."""
        return await _control(control.list_agents())

    @router.post(
        "/agents/{agent_id}/state",
        tags=["agents"],
        response_model=AgentView,
        responses=_errors(400, 401, 403, 404, 409, 422),
    )
    async def set_agent_state(
        agent_id: Id,
        body: AgentStateRequest,
        principal: Annotated[Principal, Depends(require("manage_agents"))],
        control: Control,
    ) -> AgentView:
        """Set an agent available or offline."""
        agent = await _control(control.set_agent_state(agent_id, body.state, principal.actor))
        logger.info("%s set agent %s %s", principal.actor, agent_id, body.state)
        return agent

    @router.post(
        "/agents/{agent_id}/clear-rona",
        tags=["agents"],
        response_model=AgentView,
        responses=_errors(400, 401, 403, 404, 409, 422),
    )
    async def clear_rona(
        agent_id: Id, principal: Annotated[Principal, Depends(require("manage_agents"))], control: Control
    ) -> AgentView:
        """Clear an agent's RONA (ring-no-answer) state."""
        agent = await _control(control.clear_rona(agent_id, principal.actor))
        logger.info("%s cleared RONA of agent %s", principal.actor, agent_id)
        return agent

    @router.get("/queues", tags=["queues"], response_model=list[QueueView], responses=_errors(401, 403))
    async def list_queues(principal: Read, control: Control) -> list[QueueView]:
        """Every queue: contacts waiting, oldest wait, agents available, on call and in after-call work."""
        return await _control(control.list_queues())

    @router.websocket("/events")
    async def events(
        websocket: WebSocket,
        token: Annotated[str | None, Query(description="the bearer token, for clients that cannot set headers")] = None,
        topics: Annotated[str | None, Query(description="comma-separated: call,monitor,agent,queue,recording")] = None,
    ) -> None:
        """Stream call, monitor, agent, queue and recording events as JSON text messages."""
        await _stream_events(websocket, token, topics)

    return router


# ------------------------------------------------------------------------------------------- the stream


def _bearer_from_header(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, credentials = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip() or None


async def _deny(websocket: WebSocket, status: int, message: str) -> None:
    """Refuse a WebSocket before accepting it: an HTTP error response where the server supports it."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(_error_response(status, message))
    else:
        await websocket.close(code=CLOSE_POLICY_VIOLATION, reason=message)


async def _stream_events(websocket: WebSocket, token: str | None, topics: str | None) -> None:
    authenticator: TokenAuthenticator = websocket.app.state.auth
    bus: EventBus = websocket.app.state.bus
    presented = token or _bearer_from_header(websocket.headers.get("authorization"))
    principal = authenticator.authenticate(presented) if presented else None
    if principal is None:
        await _deny(websocket, 401, "missing bearer token" if not presented else "invalid bearer token")
        return
    if not principal.has("read"):
        await _deny(websocket, 403, f"token {principal.name!r} lacks the 'read' permission")
        return
    try:
        wanted = [part.strip() for part in topics.split(",") if part.strip()] if topics else None
        subscription = bus.subscribe(wanted)
    except ValueError as exc:
        await _deny(websocket, 400, str(exc))
        return
    logger.info("%s subscribed to events (%s)", principal.actor, ", ".join(wanted) if wanted else "all topics")
    try:
        await websocket.accept()
        await _pump_events(websocket, subscription)
    finally:
        subscription.close()
        logger.info("%s left the event stream", principal.actor)


async def _pump_events(websocket: WebSocket, subscription: Subscription) -> None:
    """Send queued events until the subscription or the client ends; close with the bus's code."""
    client_gone = False

    async with anyio.create_task_group() as group:

        async def send_events() -> None:
            try:
                while (text := await subscription.get()) is not None:
                    await websocket.send_text(text)
            except (WebSocketDisconnect, RuntimeError, OSError) as exc:  # the client went away mid-send
                logger.debug("event stream send ended: %r", exc)
            group.cancel_scope.cancel()

        async def watch_client() -> None:
            nonlocal client_gone
            try:
                while (await websocket.receive())["type"] != "websocket.disconnect":
                    pass
            except (WebSocketDisconnect, RuntimeError, OSError) as exc:
                logger.debug("event stream receive ended: %r", exc)
            client_gone = True
            group.cancel_scope.cancel()

        group.start_soon(send_events)
        group.start_soon(watch_client)

    if not client_gone and subscription.close_code is not None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await websocket.close(code=subscription.close_code, reason=subscription.close_reason)


# ------------------------------------------------------------------------------------- errors and logging


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        location = ".".join(str(item) for item in error.get("loc", ()))
        parts.append(f"{location}: {error.get('msg', 'invalid')}" if location else str(error.get("msg")))
    more = len(exc.errors()) - 5
    if more > 0:
        parts.append(f"and {more} more")
    return "invalid request: " + "; ".join(parts)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.url.path}"
        elif exc.status_code == 405 and message == "Method Not Allowed":
            message = f"method {request.method} is not allowed on {request.url.path}"
        return _error_response(exc.status_code, message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error_response(422, _validation_message(exc))

    @app.exception_handler(MediagwError)
    async def mediagw_error(request: Request, exc: MediagwError) -> JSONResponse:
        status = exc.http_status if isinstance(exc, ControlError) else http_status_for(exc)
        if status >= 500:
            logger.error("error in %s %s", request.method, request.url.path, exc_info=exc)
            return _error_response(status, INTERNAL_ERROR_MESSAGE)
        return _error_response(status, str(exc) or HTTPStatus(status).phrase)


class RequestLogMiddleware:
    """Access log (method, path, status, time, token name; never query strings or headers) and the last
    guard: an exception nothing else handled becomes a JSON 500, its traceback goes to the log only."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_logged(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        except Exception:
            logger.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if response_started:
                raise
            status = 500
            body = json.dumps(error_payload(500, INTERNAL_ERROR_MESSAGE)).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            who = scope.get("state", {}).get("mediagw_principal", "-")
            level = logging.DEBUG if scope.get("method") in ("GET", "HEAD") and status < 400 else logging.INFO
            if access_logger.isEnabledFor(level):
                client = scope.get("client")
                access_logger.log(
                    level,
                    "%s %s %s -> %d in %.1f ms by %s",
                    client[0] if client else "-",
                    scope.get("method"),
                    scope.get("path"),
                    status,
                    elapsed_ms,
                    who,
                )


# -------------------------------------------------------------------------------------------- the app


class Health(pydantic.BaseModel):
    """Body of ``GET /healthz``."""

    status: str = "ok"


def create_app(
    control: ControlPlane,
    tokens: Sequence[ApiToken] | TokenAuthenticator,
    *,
    bus: EventBus | None = None,
    title: str = "mediagw control API",
) -> FastAPI:
    """The API application over ``control``, accepting ``tokens``; ``bus`` feeds ``WS /api/v1/events``.

    The gateway passes the same ``EventBus`` to its control plane (which publishes) and here; without
    one a private bus is created (``app.state.bus``). ``ApiServer.stop`` closes it.
    """
    authenticator = tokens if isinstance(tokens, TokenAuthenticator) else TokenAuthenticator(tokens)
    if not len(authenticator):
        logger.warning("no API tokens are configured: every /api/v1 request will be refused with 401")
    app = FastAPI(
        title=title,
        version=API_VERSION,
        description=(
            "Control API of the mediagw contact-center gateway: calls, monitoring, agents, queues, "
            "recordings. Every /api/v1 route needs 'Authorization: Bearer TOKEN'. Errors are "
            '{"error": {"status": N, "message": "..."}}. Events: WebSocket /api/v1/events?token=TOKEN'
            "[&topics=call,monitor,agent,queue,recording], JSON text messages with type, seq and at."
        ),
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        generate_unique_id_function=lambda route: route.name,
    )
    app.state.control = control
    app.state.auth = authenticator
    app.state.bus = bus if bus is not None else EventBus()
    app.add_middleware(RequestLogMiddleware)
    _install_error_handlers(app)

    @app.get("/healthz", tags=["health"], response_model=Health)
    async def healthz() -> Health:
        """Liveness; needs no token."""
        return Health()

    app.include_router(_build_router())
    return app
