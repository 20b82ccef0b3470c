"""Every inbound parser refuses a body it cannot read as a whole with MalformedPayload and a code (and a
reason a sender can act on), before looking at any event."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from connectors.parsing import MalformedPayload
from tests.connectors.parsers import events, hubspot, outbound, relay

# (parser, body, code, text the message holds; None where only the code is checked)
CASES: list[tuple[Callable[[Any], Any], bytes, str, str | None]] = [
    (hubspot, b"", "empty_body", "body is empty"),
    (hubspot, b"   ", "empty_body", "body is empty"),
    (hubspot, b"not json", "not_json", "body is not valid JSON"),
    (hubspot, b"\xff\xfe[]", "not_json", "body is not valid UTF-8"),
    (hubspot, b'[{"a": NaN}]', "not_json", "NaN is not valid JSON"),
    (hubspot, b"[" * 100000, "not_json", "body is not"),
    (hubspot, b'{"events": []}', "wrong_shape", "expected a JSON array of HubSpot events, got an object"),
    (hubspot, b'"text"', "wrong_shape", "got a string"),
    (outbound, b"", "empty_body", "body is empty"),
    (outbound, b"<soapenv:Envelope", "not_xml", "body is not well-formed XML (line 1"),
    (outbound, b'{"json": true}', "not_xml", "not well-formed XML"),
    (outbound, b'<?xml version="1.0" encoding="bogus"?><a/>', "not_xml", "bad encoding declaration"),
    (outbound, b"<Envelope/>", "wrong_shape", "expected a SOAP 1.1 Envelope"),
    (outbound, b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body/></e:Envelope>',
     "wrong_shape", "SOAP Body holds no notifications element"),
    (relay, b"<xml/>", "not_json", None),
    (relay, b"42", "wrong_shape", None),
    (relay, b'{"events": {"object": "Lead"}}', "wrong_shape", None),
    (relay, b'{"organizationId": "nope", "events": []}', "wrong_shape", None),
    (events, b"", "empty_body", None),
    (events, b"{", "not_json", None),
    (events, b'{"events": []}', "wrong_shape", None),
    (events, b'{"batch": {"type": "track"}}', "wrong_shape", None),
    (events, b"true", "wrong_shape", None),
    (events, b'{"batch": [], "x": Infinity}', "not_json", None),
]


@pytest.mark.parametrize(
    "parse, body, code, text",
    [pytest.param(*case, id=f"{case[0].__name__}-{case[2]}-{i}") for i, case in enumerate(CASES)],
)
def test_malformed_bodies(parse: Callable[[Any], Any], body: bytes, code: str, text: str | None) -> None:
    with pytest.raises(MalformedPayload) as excinfo:
        parse(body)
    assert excinfo.value.code == code
    if text is not None:
        assert text in str(excinfo.value)
