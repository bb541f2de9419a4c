"""The ``vyked`` pytest plugin changes nothing for suites that do not use its fixtures, in
pytest-asyncio's ``auto`` and ``strict`` modes and without pytest-asyncio at all: each
generated suite runs in a child pytest with and without the plugin (``-p no:vyked``), with
warnings as errors, and must pass alike."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLAIN_SUITE = """
import asyncio
import os

import pytest
import pytest_asyncio


@pytest.fixture
def redis_server():
    return "the suite's own fixture wins over the plugin's"


@pytest_asyncio.fixture
async def resource():
    await asyncio.sleep(0)
    yield "resource"


def test_sync(redis_server):
    assert redis_server.startswith("the suite's own")


@pytest.mark.asyncio
async def test_async(resource):
    await asyncio.sleep(0)
    assert resource == "resource"


def test_plugin_is_loaded_as_expected(request):
    assert request.config.pluginmanager.has_plugin("vyked") is (os.environ["EXPECT_VYKED"] == "1")
"""

SYNC_SUITE = """
import os


def test_sync():
    assert 1 + 1 == 2


def test_plugin_is_loaded_as_expected(request):
    assert request.config.pluginmanager.has_plugin("vyked") is (os.environ["EXPECT_VYKED"] == "1")
"""


def run_suite(directory: Path, suite: str, ini: str, *args: str, vyked: bool = True) -> str:
    """Run ``suite`` in a child pytest in ``directory``; its output, after checking it passed."""
    (directory / "pytest.ini").write_text(textwrap.dedent(ini))
    (directory / "test_suite.py").write_text(textwrap.dedent(suite))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_") and k != "VYKED_TEST_LOOP"}
    env["EXPECT_VYKED"] = "1" if vyked else "0"
    command = [sys.executable, "-m", "pytest", "-q", "-W", "error", "-p", "no:cacheprovider", *args]
    if not vyked:
        command += ["-p", "no:vyked"]
    result = subprocess.run(command, cwd=directory, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("mode", ["auto", "strict"])
def test_a_suite_without_vyked_fixtures_runs_alike(tmp_path: Path, mode: str) -> None:
    ini = f"""
        [pytest]
        asyncio_mode = {mode}
        asyncio_default_fixture_loop_scope = function
    """
    with_plugin = run_suite(tmp_path, PLAIN_SUITE, ini)
    without = run_suite(tmp_path, PLAIN_SUITE, ini, vyked=False)
    assert with_plugin.startswith("3 passed") and without.startswith("3 passed")


def test_a_suite_without_pytest_asyncio_runs_alike(tmp_path: Path) -> None:
    ini = """
        [pytest]
    """
    with_plugin = run_suite(tmp_path, SYNC_SUITE, ini, "-p", "no:asyncio")
    without = run_suite(tmp_path, SYNC_SUITE, ini, "-p", "no:asyncio", vyked=False)
    assert with_plugin.startswith("2 passed") and without.startswith("2 passed")
