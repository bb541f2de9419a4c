"""``VYKED_TRACING`` and ``host.tracing``: explicit setting over the variable over ``auto``;
a bad value names what is wrong. (Spans across processes: tests/integration/test_tracing.py.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

from vyked.core.exceptions import ConfigurationError
from vyked.core.tracing import tracing_wanted


def test_explicit_settings_win_over_the_variable() -> None:
    assert tracing_wanted(False, environ={"VYKED_TRACING": "on"}) is False
    assert tracing_wanted("off", environ={"VYKED_TRACING": "on"}) is False
    pytest.importorskip("opentelemetry.trace", reason="needs vyked-core[otel]")
    assert tracing_wanted(True, environ={"VYKED_TRACING": "off"}) is True
    assert tracing_wanted(None, environ={"VYKED_TRACING": "ON"}) is True


def test_the_variable_wins_over_auto() -> None:
    assert tracing_wanted(None, environ={"VYKED_TRACING": "off"}) is False
    assert tracing_wanted(None, environ={"VYKED_TRACING": " 0 "}) is False


@pytest.mark.parametrize(
    ("setting", "environ", "named"), [("sometimes", {}, "tracing"), (None, {"VYKED_TRACING": "maybe"}, "VYKED_TRACING")]
)
def test_a_bad_value_is_a_configuration_error_naming_it(
    setting: str | None, environ: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigurationError, match=f"{named}=.*expected one of auto, on, off"):
        tracing_wanted(setting, environ=environ)


def test_auto_traces_only_once_a_tracer_provider_is_set() -> None:
    """In a fresh interpreter: nothing imported, nothing set, then the SDK's provider."""
    pytest.importorskip("opentelemetry.sdk", reason="needs opentelemetry-sdk (a test dependency)")
    script = (
        "import sys\n"
        "from vyked.core.tracing import tracing_wanted\n"
        "print(tracing_wanted(environ={}), 'opentelemetry' in sys.modules)\n"
        "from opentelemetry import trace\n"
        "print(tracing_wanted(environ={}))\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "trace.set_tracer_provider(TracerProvider())\n"
        "print(tracing_wanted(environ={}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:3] == ["False False", "False", "True"]
