"""The HTTP side: the Starlette app, its routes and middleware, and the uvicorn server."""

from app.http.uvicorn_core import import_without_cli

# Before any module of this package imports uvicorn (issue 15: a session pod's start-up).
import_without_cli()
