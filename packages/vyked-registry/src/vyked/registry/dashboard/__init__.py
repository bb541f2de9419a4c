"""The registry dashboard: a web page and a JSON API of everything the registry knows.

``vyked-registry --dashboard-port N`` (needs ``pip install 'vyked-registry[dashboard]'``, which
brings aiohttp) serves, on 127.0.0.1 unless ``--dashboard-host`` says otherwise:

``/``                  the page: services, instances, states, the dependency graph; live
``/api/status``        what ``vyked-registry status --json`` prints
``/api/overview``      services with their instances, and the graph: what the page draws
``/api/services``      services with their instances (``/api/services/{name}``: one)
``/api/graph``         the dependency graph between services
``/api/events``        server-sent events: ``snapshot`` (an overview) at once and after every
                       change, ``heartbeats`` (seconds since each host was heard from) every
                       couple of seconds

:mod:`~vyked.registry.dashboard.views` builds the documents and needs nothing but the registry;
:mod:`~vyked.registry.dashboard.app` serves them with aiohttp, fed by the registry's change
listener (no polling).
"""
