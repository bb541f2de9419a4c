"""Log setup: text by default, JSON lines with VYKED_LOG_FORMAT=json, the level from
VYKED_LOG_LEVEL; the host's service and node_id, and the current span's ids, in every line."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest

from vyked.core.exceptions import ConfigurationError, MissingExtra
from vyked.core.logs import JsonFormatter, configure_logging, forget_identity, log_format, log_level, set_identity
from vyked.core.service_host import ServiceHost


@pytest.fixture
def root_logging() -> Iterator[None]:
    """configure_logging changes the root logger: put it back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_json_lines_carry_level_logger_message_and_the_hosts_identity(root_logging: None) -> None:
    out = io.StringIO()
    configure_logging("DEBUG", "json", force=True, stream=out)
    set_identity("Orders", "ab" * 16)
    logging.getLogger("vyked.test").info("hello %s", "world")
    try:
        raise ValueError("bad")
    except ValueError:
        logging.getLogger("vyked.test").exception("it failed")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["level"] == "INFO" and first["logger"] == "vyked.test" and first["message"] == "hello world"
    assert first["service"] == "Orders" and first["node_id"] == "ab" * 16
    assert first["time"].endswith("Z") and "T" in first["time"]
    assert "trace_id" not in first  # no span is current
    assert second["level"] == "ERROR" and "ValueError: bad" in second["exception"]
    forget_identity("ab" * 16)


def test_json_lines_name_the_current_span(root_logging: None) -> None:
    trace = pytest.importorskip("opentelemetry.trace")
    out = io.StringIO()
    configure_logging("INFO", "json", force=True, stream=out)
    context = trace.SpanContext(trace_id=0x1234, span_id=0xABCD, is_remote=False)
    with trace.use_span(trace.NonRecordingSpan(context)):
        logging.getLogger("vyked.test").warning("inside a span")
    logging.getLogger("vyked.test").warning("outside")
    inside, outside = (json.loads(line) for line in out.getvalue().splitlines())
    assert inside["trace_id"] == f"{0x1234:032x}" and inside["span_id"] == f"{0xABCD:016x}"
    assert "trace_id" not in outside and "span_id" not in outside


def test_text_is_the_default_and_the_level_is_honoured(root_logging: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VYKED_LOG_FORMAT", raising=False)
    monkeypatch.setenv("VYKED_LOG_LEVEL", "warning")
    out = io.StringIO()
    configure_logging(force=True, stream=out)
    logging.getLogger("vyked.test").info("not shown")
    logging.getLogger("vyked.test").warning("shown")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].endswith("WARNING vyked.test: shown")
    assert not isinstance(logging.getLogger().handlers[0].formatter, JsonFormatter)


def test_application_logging_is_left_alone(root_logging: None) -> None:
    out = io.StringIO()
    configure_logging("INFO", "text", force=True, stream=out)
    configure_logging("DEBUG", "json")  # the root logger has a handler: nothing changes
    logging.getLogger("vyked.test").info("still text")
    assert out.getvalue().rstrip().endswith("INFO vyked.test: still text")


def test_bad_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VYKED_LOG_FORMAT", "xml")
    with pytest.raises(ConfigurationError, match="VYKED_LOG_FORMAT='xml'"):
        log_format()
    monkeypatch.setenv("VYKED_LOG_LEVEL", "loud")
    with pytest.raises(ConfigurationError, match="VYKED_LOG_LEVEL='loud'"):
        log_level()
    with pytest.raises(ConfigurationError, match="--log-format='yaml'"):
        log_format("yaml", variable="--log-format")
    assert log_level("debug") == logging.DEBUG and log_level("15") == 15
    assert log_format("JSON") == "json"


def test_metrics_port_without_the_extra_names_it() -> None:
    """A fresh interpreter where prometheus_client cannot be imported (as when it is not
    installed): starting a host with a metrics port fails with MissingExtra naming the extra."""
    code = """
import asyncio, sys
sys.modules["prometheus_client"] = None  # import fails as if it were not installed
from vyked.core.exceptions import MissingExtra
from vyked.core.service_host import ServiceHost

async def main():
    host = ServiceHost("127.0.0.1:1", metrics_port=0)
    try:
        await host.start()
    except MissingExtra as exc:
        print("MissingExtra:", exc)
    print("state:", host.state.value)

asyncio.run(main())
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "MissingExtra:" in result.stdout, result.stdout + result.stderr
    assert "pip install 'vyked-core[metrics]'" in result.stdout
    assert "state: stopped" in result.stdout
    assert issubclass(MissingExtra, ImportError)
    assert ServiceHost("127.0.0.1:1").observers == []
