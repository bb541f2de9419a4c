"""The installed ``vyked`` console script, with vyked-core alone: what it does before (or
without) reaching a cluster. The commands against real registries and services are in
tests/integration/test_cli.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vyked.core.__about__ import __version__
from vyked.core.testing import free_port

pytest.importorskip("typer", reason="the vyked command needs vyked-core[cli]")

VYKED = Path(sys.executable).parent / "vyked"
if not VYKED.exists():
    pytest.skip(f"the vyked console script is not installed beside {sys.executable}", allow_module_level=True)

HINT = "pip install 'vyked-core[cli]'"


def hide(tmp_path: Path, *names: str) -> dict[str, str]:
    """An environment whose Python cannot import ``names`` (a sitecustomize refuses them)."""
    (tmp_path / "sitecustomize.py").write_text(
        textwrap.dedent(
            f"""
            import sys
            from importlib.abc import MetaPathFinder

            HIDDEN = {names!r}

            class _Hide(MetaPathFinder):
                def find_spec(self, name, path=None, target=None):
                    if any(name == h or name.startswith(h + ".") for h in HIDDEN):
                        raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                    return None

            sys.meta_path.insert(0, _Hide())
            """
        )
    )
    env = {"PYTHONPATH": os.pathsep.join(filter(None, (str(tmp_path), os.environ.get("PYTHONPATH"))))}
    probe = subprocess.run(
        [sys.executable, "-c", f"import {names[0]}"], env={**os.environ, **env}, capture_output=True, text=True
    )
    assert f"No module named '{names[0]}'" in probe.stderr, "the sitecustomize did not hide it"
    return env


def vyked(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the console script with ``env`` set on top of this process's environment, less its
    ``VYKED_*`` variables (so that the developer's own do not change the outcome)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("VYKED_")}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, str(VYKED), *args], env=environ, input=stdin, capture_output=True, text=True, timeout=60
    )


def test_version_and_help() -> None:
    version = vyked("--version")
    assert (version.returncode, version.stdout.strip()) == (0, f"vyked {__version__}")
    helped = vyked("--help", env={"COLUMNS": "120"})
    assert helped.returncode == 0
    for command in ("run", "call", "publish", "status", "schema"):
        assert command in helped.stdout
    assert vyked().returncode == 2  # no command: the help, as a usage error
    assert vyked("frobnicate").returncode == 2


def test_without_the_extra_it_names_the_extra_and_exits_2(tmp_path: Path) -> None:
    result = vyked("status", env=hide(tmp_path, "typer"))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("vyked: ") and HINT in line and "'typer'" in line
    assert result.stdout == ""


def test_call_and_publish_without_vyked_tcp_say_what_to_install(tmp_path: Path) -> None:
    env = {**hide(tmp_path, "vyked.tcp"), "VYKED_REGISTRY": f"127.0.0.1:{free_port()}"}
    for args in (["call", "Calculator.add", '{"a": 1}'], ["publish", "Calculator:1.computed", "{}"]):
        result = vyked(*args, env=env)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip() == f"vyked {args[0]}: needs vyked-tcp: pip install vyked-tcp"


def test_no_registry_answering_is_exit_3_with_a_json_error_for_scripts() -> None:
    port = free_port()
    result = vyked("status", "--registry", f"127.0.0.1:{port}", "--timeout", "2", "--json")
    assert result.returncode == 3, result.stderr
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "RegistryUnavailable" and error["exit_code"] == 3
    assert f"127.0.0.1:{port}" in error["message"]
    assert result.stderr.startswith("vyked status: ")
    # the same through VYKED_REGISTRY, for people: one line on stderr, nothing on stdout
    people = vyked("status", env={"VYKED_REGISTRY": f"127.0.0.1:{port}"})
    assert (people.returncode, people.stdout) == (3, "")
    assert len(people.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("env", "args", "expected"),
    [
        ({"VYKED_REGISTRY": "host:port"}, ["status"], "VYKED_REGISTRY='host:port': expected HOST:PORT"),
        ({}, ["status", "--registry", "a:b"], "--registry='a:b': expected HOST:PORT"),
        ({"VYKED_HEARTBEAT_TIMEOUT": "-1"}, ["status"], "VYKED_HEARTBEAT_TIMEOUT='-1'"),
        ({}, ["call", "Calculator", "{}"], "expected SERVICE[:VERSION].ENDPOINT"),
        ({}, ["call", "Calculator:.add", "{}"], "expected SERVICE[:VERSION].ENDPOINT"),
        ({}, ["call", "Calculator.add", "{'a': 1}"], "the parameters are not JSON"),
        ({}, ["call", "Calculator.add", "[1, 2]"], "must be a JSON object"),
        ({}, ["publish", "Calculator.computed", "42"], "must be a JSON object"),
        (
            {"VYKED_PUBSUB": "localhost:6379"},
            ["publish", "Calculator:1.computed", "{}"],
            "VYKED_PUBSUB='localhost:6379'",
        ),
        ({}, ["run", "no_such_module_here"], "no module named 'no_such_module_here'"),
        ({}, ["schema", "vyked.core.settings"], "no service found"),
        ({}, ["schema", "vyked.core.settings:HostSettings"], "is not a service"),
    ],
)
def test_usage_and_configuration_errors_exit_2_naming_the_culprit(
    env: dict[str, str], args: list[str], expected: str
) -> None:
    result = vyked(*args, env=env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_call_reads_its_parameters_from_stdin() -> None:
    result = vyked("call", "Calculator.add", "-", stdin="not json")
    assert result.returncode == 2 and "the parameters are not JSON" in result.stderr


def test_reload_without_its_extra_names_it(tmp_path: Path) -> None:
    module = tmp_path / "anything.py"
    module.write_text("")
    result = vyked("run", "--reload", str(module), env=hide(tmp_path, "watchfiles"))
    assert result.returncode == 2
    assert "pip install 'vyked-core[reload]'" in result.stderr


def test_a_module_that_raises_shows_its_traceback_and_exits_1(tmp_path: Path) -> None:
    module = tmp_path / "broken.py"
    module.write_text("def helper():\n    raise RuntimeError('broken at import')\n\n\nhelper()\n")
    for command in ("run", "schema"):
        result = vyked(command, str(module), env={"VYKED_REGISTRY": f"127.0.0.1:{free_port()}"})
        assert result.returncode == 1, result.stderr
        assert result.stderr.startswith(f"vyked {command}: loading {module} raised RuntimeError:")
        assert f'File "{module}", line 2, in helper' in result.stderr
        assert result.stderr.strip().endswith("RuntimeError: broken at import")
