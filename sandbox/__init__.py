"""The sandbox CRM: a local emulator of the HubSpot and Salesforce endpoints leadbridge uses, plus a Slack sink.

It is a product feature (sandbox mode runs the whole bridge without CRM accounts), not a test double: the real
vendor SDKs talk to it over real HTTP, and it sends real signed webhooks when its records change.
"""

from sandbox.client import sandbox_instance, sandbox_requests_session
from sandbox.server import (
    DEFAULT_HUBSPOT_APP_USER_ID,
    DEFAULT_HUBSPOT_TOKEN,
    DEFAULT_SF_ORG_ID,
    DEFAULT_SF_PASSWORD,
    DEFAULT_SF_SESSION,
    DEFAULT_SF_TOKEN,
    DEFAULT_SF_USERNAME,
    SLACK_WEBHOOK_PATH,
    SandboxConfig,
    SandboxCRM,
)

__all__ = [
    "DEFAULT_HUBSPOT_APP_USER_ID",
    "DEFAULT_HUBSPOT_TOKEN",
    "DEFAULT_SF_ORG_ID",
    "DEFAULT_SF_PASSWORD",
    "DEFAULT_SF_SESSION",
    "DEFAULT_SF_TOKEN",
    "DEFAULT_SF_USERNAME",
    "SLACK_WEBHOOK_PATH",
    "SandboxCRM",
    "SandboxConfig",
    "sandbox_instance",
    "sandbox_requests_session",
]
