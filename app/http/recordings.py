"""`P + recordings/`: the list (JSON, or the player page for a browser) and each recording."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from app.http.middleware import NO_STORE, PLAYER_CONTENT_SECURITY_POLICY
from app.http.routes import denied, static_page
from app.http.state import server_state
from app.terminal.recording import list_recordings, recording_path

# The list depends on Accept: a browser's navigation gets the page, anything else JSON.
VARY = {"Vary": "Accept"}


def _quality(accept: str, media_type: str) -> float:
    """The q-value `accept` gives `media_type`, from its most specific matching range."""
    kind = media_type.split("/")[0]
    best: tuple[int, float] = (-1, 0.0)
    for item in accept.split(","):
        range_, *params = (part.strip() for part in item.split(";"))
        specificity = {media_type: 2, f"{kind}/*": 1, "*/*": 0}.get(range_.lower())
        if specificity is None or specificity < best[0]:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(1.0, max(0.0, float(value)))
                except ValueError:
                    q = 0.0
        best = (specificity, q)
    return best[1]


def wants_page(request: Request) -> bool:
    """Whether the list should be the player page: a browser navigating, not `?format=json`."""
    if request.query_params.get("format") == "json":
        return False
    accept = request.headers.get("accept", "")
    return _quality(accept, "text/html") > _quality(accept, "application/json")


async def recordings(request: Request) -> Response:
    """The list of this server's asciicast recordings, the page that plays them, or one file."""
    name = request.path_params.get("name")
    if name is None and wants_page(request):
        headers = NO_STORE | VARY | {"Content-Security-Policy": PLAYER_CONTENT_SECURITY_POLICY}
        return static_page("recordings.html", headers)
    state = server_state(request.app)
    if state.auth.caller(request.headers, request.cookies) is None:
        return denied(401, "authentication required")
    directory = state.settings.recordings_dir
    if name is None:
        found = list_recordings(directory) if directory is not None else []
        body = {"recordings": found, "enabled": directory is not None}
        return JSONResponse(body, headers=NO_STORE | VARY)
    path = recording_path(directory, name) if directory is not None else None
    if path is None:
        return denied(404, "no such recording")
    return FileResponse(path, media_type="application/x-asciicast", headers=NO_STORE)
