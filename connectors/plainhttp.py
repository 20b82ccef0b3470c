"""Plain-HTTP routing for simple-salesforce: a requests session that sends its https calls to a local http URL.

It is HTTP plumbing, not sandbox knowledge: connectors build it when SALESFORCE_SANDBOX_URL is set (development
only), and sandbox.client re-exports it for tests and CLI commands. simple-salesforce hard-codes `https://`
for every URL it builds (SALESFORCE.md §0). The sandbox serves plain HTTP, so the session handed to the SDK carries an adapter that sends the SDK's https URLs for the sandbox's
host (and for the SOAP login host) to the sandbox over http. Nothing else is rewritten.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter


class PlainHttpAdapter(HTTPAdapter):
    """Send https requests for one origin to a plain-http base URL instead."""

    def __init__(self, base_url: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.base_url = base_url.rstrip("/")

    def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:  # type: ignore[override]
        """Rewrite the scheme and origin, keep the path and query."""
        parts = urlsplit(request.url or "")
        request.url = self.base_url + parts.path + (f"?{parts.query}" if parts.query else "")
        return super().send(request, **kwargs)  # type: ignore[arg-type]


def sandbox_requests_session(base_url: str, login_domain: str = "login") -> requests.Session:
    """Return a session that routes simple-salesforce's https calls (REST and SOAP login) to the sandbox."""
    parts = urlsplit(base_url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"the sandbox base URL must look like http://host:port, not {base_url!r}")
    session = requests.Session()
    session.trust_env = False  # an environment proxy or CA bundle must not hijack local sandbox traffic
    adapter = PlainHttpAdapter(base_url)
    port = parts.port or 80
    session.mount(f"https://{parts.hostname}:{port}/", adapter)
    if port == 443:
        session.mount(f"https://{parts.hostname}/", adapter)
    session.mount(f"https://{login_domain}.salesforce.com/", adapter)
    return session


def sandbox_instance(base_url: str) -> str:
    """Return the `host:port` simple-salesforce should use as its instance for this sandbox."""
    parts = urlsplit(base_url)
    return f"{parts.hostname}:{parts.port or 80}"
