"""``MODULE[:ATTR]``: importing what ``vyked run`` and ``vyked schema`` name, and finding the
services in it.

``MODULE`` is a dotted module name, imported with the current directory on ``sys.path``, or
the path of a ``.py`` file, imported with its own directory on ``sys.path`` (so that it may
import its neighbours). ``ATTR`` (dotted) names what to serve:

- a service instance (a :class:`~vyked.core.service.Service`: ``TCPService``, ``HTTPService``);
- a service class, instantiated without arguments;
- a function taking no arguments that returns a service or a list of them (a factory);
- a list or tuple of any of these.

Without ``ATTR`` every service instance that is a module attribute is taken, and every service
class defined in the module (not imported into it) that can be instantiated without arguments
and has no instance among the attributes. Classes that need arguments are skipped; when nothing
is found the error names them.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, cast

from vyked.core.service import Service

__all__ = ["LoadError", "Target", "load_services", "load_target", "parse_target"]


class LoadError(Exception):
    """A target cannot be imported, or holds no service: the message says why."""


@dataclass(frozen=True, slots=True)
class Target:
    """One ``MODULE[:ATTR]`` argument."""

    module: str
    attr: str | None = None
    path: Path | None = None
    """The file, when ``module`` names one (``services/identity.py``)."""

    def __str__(self) -> str:
        where = str(self.path) if self.path is not None else self.module
        return f"{where}:{self.attr}" if self.attr else where


@dataclass(slots=True)
class Found:
    """The services of one target, and the classes skipped because they need arguments."""

    services: list[Service] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def parse_target(text: str) -> Target:
    """``pkg.module``, ``pkg.module:Attr``, ``path/to/file.py`` or ``path/to/file.py:attr.sub``."""
    text = text.strip()
    module, sep, attr = text.rpartition(":")
    if not sep or not attr or not all(part.isidentifier() for part in attr.split(".")):
        module, attr = text, ""
    if not module:
        raise LoadError(f"{text!r}: expected MODULE[:ATTR] (a dotted module name or a .py file)")
    if module.endswith(".py") or os.sep in module or "/" in module:
        path = Path(module).expanduser().resolve()
        if not path.is_file():
            raise LoadError(f"{text!r}: no such file: {path}")
        return Target(module=path.stem, attr=attr or None, path=path)
    if not all(part.isidentifier() for part in module.split(".")):
        raise LoadError(f"{text!r}: {module!r} is neither a dotted module name nor a .py file")
    return Target(module=module, attr=attr or None)


def import_target(target: Target) -> ModuleType:
    """Import the target's module (see the module docstring for ``sys.path``)."""
    try:
        if target.path is None:
            cwd = os.getcwd()
            if cwd not in sys.path and "" not in sys.path:
                sys.path.insert(0, cwd)
            return importlib.import_module(target.module)
        return _import_file(target.module, target.path)
    except LoadError:
        raise
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if target.path is None and (target.module == missing or target.module.startswith(missing + ".")):
            raise LoadError(f"{target}: no module named {exc.name!r} (from {os.getcwd()})") from exc
        raise


def _import_file(name: str, path: Path) -> ModuleType:
    existing = sys.modules.get(name)
    if existing is not None and getattr(existing, "__file__", None) and Path(existing.__file__ or "").resolve() == path:
        return existing
    if existing is not None:  # another module has that name: keep both
        name = f"{name}_{abs(hash(str(path))):x}"
    directory = str(path.parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise LoadError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it, as an import does (dataclasses need it)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def load_target(target: Target) -> Found:
    """The services ``target`` names (see the module docstring)."""
    module = import_target(target)
    found = Found()
    if target.attr is None:
        _discover(module, found)
        if not found.services:
            detail = f"; skipped, as they need arguments: {', '.join(found.skipped)}" if found.skipped else ""
            raise LoadError(
                f"{target}: no service found (no TCPService/HTTPService instance, nor a class defined there "
                f"that takes no arguments){detail}; name one with {target}:ATTR"
            )
        return found
    obj: Any = module
    for part in target.attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise LoadError(f"{target}: {_name(obj)} has no attribute {part!r}") from None
    _take(obj, str(target), found, depth=0)
    return found


def load_services(targets: Iterable[str]) -> list[Service]:
    """Every service the ``MODULE[:ATTR]`` texts name, in order, each object once."""
    services: list[Service] = []
    for text in targets:
        for service in load_target(parse_target(text)).services:
            if not any(service is s for s in services):
                services.append(service)
    return services


def _discover(module: ModuleType, found: Found) -> None:
    values = list(vars(module).values())
    instances = [v for v in values if _is_service(v)]
    instance_types = {type(s) for s in instances}
    for value in values:
        if _is_service(value):
            found.services.append(value)
        elif _is_service_class(value) and value.__module__ == module.__name__ and value not in instance_types:
            if _takes_no_arguments(value):
                found.services.append(_instantiate(value, module.__name__))
            else:
                found.skipped.append(value.__qualname__)


def _take(obj: Any, where: str, found: Found, depth: int) -> None:
    if _is_service(obj):
        found.services.append(obj)
    elif _is_service_class(obj):
        if not _takes_no_arguments(obj):
            raise LoadError(
                f"{where}: {obj.__qualname__}{_signature(obj)} needs arguments; "
                "name an instance, or a function that makes one, instead"
            )
        found.services.append(_instantiate(obj, where))
    elif isinstance(obj, list | tuple) and depth == 0:
        for item in obj:
            _take(item, where, found, depth + 1)
    elif callable(obj) and not isinstance(obj, type) and depth == 0:
        if not _takes_no_arguments(obj):
            raise LoadError(f"{where}: {_name(obj)}{_signature(obj)} needs arguments")
        try:
            made = obj()
        except Exception as exc:
            raise LoadError(f"{where}: {_name(obj)}() raised {type(exc).__name__}: {exc}") from exc
        _take(made, where, found, depth + 1)
    else:
        raise LoadError(
            f"{where}: {_name(obj)} is not a service: expected a TCPService/HTTPService instance or class, "
            "a function returning services, or a list of them"
        )


def _is_service(value: object) -> bool:
    return isinstance(value, Service) and bool(value.kind)


def _is_service_class(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, Service) and bool(value.kind) and not inspect.isabstract(value)


def _takes_no_arguments(obj: Any) -> bool:
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return False
    return all(
        p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in signature.parameters.values()
    )


def _instantiate(cls: type[Service], where: str) -> Service:
    try:
        return cast(Callable[[], Service], cls)()  # a subclass that takes no arguments, checked
    except Exception as exc:
        raise LoadError(f"{where}: {cls.__qualname__}() raised {type(exc).__name__}: {exc}") from exc


def _signature(obj: Any) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"


def _name(obj: object) -> str:
    if isinstance(obj, ModuleType):
        return f"module {obj.__name__}"
    return getattr(obj, "__qualname__", None) or repr(obj)
