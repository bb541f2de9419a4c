"""``pip install vyked-http`` alone gives the seed's imports from ``vyked``."""

from __future__ import annotations

import importlib
from pathlib import Path

import aiohttp.web

import vyked
import vyked.http


def test_the_seed_imports_work() -> None:
    from vyked import Host, HTTPService, HTTPServiceClient, Request, Response, get, post, websocket

    assert HTTPService is vyked.http.HTTPService
    assert HTTPServiceClient is vyked.http.HTTPServiceClient
    assert (get, post, websocket) == (vyked.http.get, vyked.http.post, vyked.http.websocket)
    assert Request is aiohttp.web.Request
    assert Response is aiohttp.web.Response
    assert Host is vyked.Host


def test_every_http_name_is_exported_from_vyked() -> None:
    names = ["HTTPService", "HTTPServiceClient", "Request", "Response", "websocket"]
    names += ["get", "post", "put", "patch", "delete", "head", "options", "trace"]
    for name in names:
        assert getattr(vyked, name) is getattr(vyked.http, name)
        assert name in dir(vyked)
        assert name in vyked.http.__all__


def test_version_and_typing_marker() -> None:
    about = importlib.import_module("vyked.http.__about__")
    assert vyked.http.__version__ == about.__version__ == "0.1.0"
    assert (Path(vyked.http.__file__).parent / "py.typed").is_file()
