"""`P + config`: the settings the page acts on, none of them secret."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.http.middleware import NO_STORE
from app.http.state import server_state


async def page_config(request: Request) -> Response:
    """Whether OSC 52 may set the clipboard and whether sessions are recorded."""
    settings = server_state(request.app).settings
    body = {
        "clipboard_osc52": settings.clipboard_osc52,
        "recordings": settings.recordings_dir is not None,
    }
    return JSONResponse(body, headers=NO_STORE)
