"""The HTTP side: the Starlette app, its routes and middleware, and the uvicorn server."""
