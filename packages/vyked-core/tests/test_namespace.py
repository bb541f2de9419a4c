"""The ``vyked`` namespace: lazy re-exports, and install hints for missing distributions."""

from __future__ import annotations

import importlib.util

import pytest

import vyked


def test_core_names_import() -> None:
    from vyked import Host, ServiceHost, VykedError

    assert Host.registry_port == 4500
    assert issubclass(vyked.ServiceUnavailable, VykedError)
    assert ServiceHost.__module__ == "vyked.core.service_host"


@pytest.mark.parametrize(
    ("name", "distribution"),
    [("TCPService", "vyked-tcp"), ("HTTPService", "vyked-http"), ("Registry", "vyked-registry")],
)
def test_missing_distribution_names_the_install(name: str, distribution: str) -> None:
    module = {"vyked-tcp": "vyked.tcp", "vyked-http": "vyked.http", "vyked-registry": "vyked.registry"}[distribution]
    if importlib.util.find_spec(module) is not None:
        assert getattr(vyked, name) is not None
        return
    with pytest.raises(ImportError, match=f"pip install {distribution}"):
        getattr(vyked, name)


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError):
        vyked.NoSuchThing  # noqa: B018


def test_dir_lists_lazy_names() -> None:
    assert {"Host", "TCPService", "HTTPService", "Registry", "api"} <= set(dir(vyked))
