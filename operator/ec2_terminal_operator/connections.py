"""kopf's HTTP session to the API server: its own credentials, a bounded connection pool."""

from __future__ import annotations

import aiohttp
import kopf

# kopf's own session has no limit, and each TLS connection keeps a 256 KiB buffer: with
# 1,000 sessions applied at once, their finalizer patches opened hundreds of connections
# (most of the operator's peak memory). The watches hold one each (five); the rest queue.
MAX_CONNECTIONS = 32


def bounded_session(info: kopf.ConnectionInfo, limit: int = MAX_CONNECTIONS) -> kopf.AiohttpSession:
    """kopf's session for `info` (as kopf makes it), with at most `limit` connections.

    Must be called on the operator's event loop; kopf closes the session when it logs in
    again or exits.
    """
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, ssl=info.as_ssl_context()),
        headers=info.as_http_headers(),
        auth=info.as_aiohttp_basic_auth(),
        proxy=info.proxy_url,
        trust_env=info.trust_env,
    )
    return kopf.AiohttpSession(
        server=info.server,
        default_namespace=info.default_namespace,
        expiration=info.expiration,
        priority=info.priority,
        aiohttp_session=session,
    )
