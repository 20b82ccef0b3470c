"""Client-side glue for the plain-HTTP sandbox: the routing session lives in connectors/plainhttp.py (connectors
build it from SALESFORCE_SANDBOX_URL and may not import the sandbox); re-exported here for tests and the CLI."""

from connectors.plainhttp import PlainHttpAdapter, sandbox_instance, sandbox_requests_session

__all__ = ["PlainHttpAdapter", "sandbox_instance", "sandbox_requests_session"]
