"""A request aiohttp cannot parse is logged as one warning line, not an error with a
traceback (anyone can send one; a black-box review found them filling the log)."""

from __future__ import annotations

import logging
import sys

import pytest
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestPayloadError

from node.app import malformed_http_in_one_line


def record_of(exc: BaseException) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        info = sys.exc_info()
    return logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1,
                             "Error handling request from %s", ("127.0.0.1",), info)


@pytest.mark.parametrize("exc", [LineTooLong(b"/v1/...", "8190"),
                                 RequestPayloadError("Can not decode content-encoding: gzip")])
def test_a_malformed_request_becomes_one_warning_line(exc: BaseException) -> None:
    record = record_of(exc)
    assert malformed_http_in_one_line(record) is True
    assert (record.levelname, record.exc_info) == ("WARNING", None)
    assert "malformed HTTP request" in record.getMessage()
    assert "127.0.0.1" in record.getMessage()


def test_a_percent_sign_in_the_request_stays_text() -> None:
    """Regression: the client's URL went into the format string, so ``%d`` in it raised
    "not enough arguments" inside logging and printed a traceback instead of the line."""
    record = record_of(LineTooLong(b"/v1/status?q=%d%s%(x)s" + b"a" * 9000, "8190"))
    assert malformed_http_in_one_line(record) is True
    message = record.getMessage()
    assert "%d%s%(x)s" in message and message.startswith(
        "Error handling request from 127.0.0.1: malformed HTTP request:")


def test_a_client_that_left_is_one_info_line() -> None:
    """Regression: ``Expect: 100-continue`` then a closed socket logged an error with a
    traceback (aiohttp's 100 Continue written to a closing transport)."""
    record = record_of(ConnectionResetError("Cannot write to closing transport"))
    assert malformed_http_in_one_line(record) is True
    assert (record.levelname, record.exc_info) == ("INFO", None)
    assert record.getMessage() == ("Error handling request from 127.0.0.1: the client closed"
                                   " the connection: Cannot write to closing transport")


def test_errors_of_our_own_keep_their_traceback() -> None:
    record = record_of(RuntimeError("a bug"))
    assert malformed_http_in_one_line(record) is True
    assert record.levelname == "ERROR" and record.exc_info is not None
