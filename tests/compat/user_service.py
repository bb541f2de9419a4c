"""A vyked 2.x style service, run as its own process by the compatibility tests.

``python user_service.py REGISTRY_PORT [REDIS_URL]``

Written the way 2.x services were (see ``docs/migrating.md``): class attributes of ``Host``,
``Host.configure`` with the name first, ``super(Cls, self).__init__``, generator handlers with
``yield from``, an application exception deriving from ``BaseException``, the 2.x service
exceptions, ``HTTPService(..., allow_cross_domain, preflight_response)``. It logs what
``Host.run()`` logs, including ``serving on HOST:PORT`` per service, and prints one line per
handled request that the tests wait for.
"""

# ruff: noqa: UP008, UP032

import json
import sys
from asyncio import sleep
from types import coroutine

from vyked import (
    Host,
    HTTPService,
    Request,
    Response,
    TCPService,
    VykedServiceError,
    VykedServiceException,
    api,
    get,
    post,
    publish,
)


class UserException(BaseException):
    pass


class UserNotFound(VykedServiceException):
    pass


def preflight(request):
    headers = {
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": "GET,POST",
        "Access-Control-Allow-Headers": "x-from-2x",
    }
    return Response(status=200, headers=headers)


# "get" comes last: as a method name it hides the decorator in the rest of the class body
class UserHTTPService(HTTPService):
    def __init__(self, ip, port):
        super(UserHTTPService, self).__init__("UserService", 1, ip, port, None, True, preflight)

    @post(path="/users/{username}")
    def create(self, request: Request):
        data = yield from request.json()
        return Response(status=200, body=(json.dumps(data)).encode())

    @get(path="/broken")
    def broken(self, request: Request):
        yield from sleep(0)
        raise UserException("broken on purpose")

    @get(path="/users/{username}")
    def get(self, request: Request):
        username = request.match_info.get("username")
        return Response(status=200, body=("Hello {}".format(username)).encode())


class UserTCPService(TCPService):
    def __init__(self, ip, port):
        super(UserTCPService, self).__init__("UserService", 1, ip, port)

    @api
    def create(self, user_name, password):
        result = yield from self._create_user_name(user_name, password)
        if user_name is None:
            raise UserException("username cannot be none")
        return result

    @api
    def create_blocking(self, user_name):
        if user_name is None:
            raise UserException("username cannot be none")
        return user_name

    @api
    def find(self, user_name):
        raise UserNotFound("no user {}".format(user_name))

    @api
    def crash(self):
        raise VykedServiceError("the database is gone")

    @api
    def change_password(self, user_name):
        self.password_changed(user_name)
        return "changed"

    @api
    def log_out(self, user_name):
        self.logged_out(user_name)
        return "logged out"

    @publish
    def password_changed(self, user_name):
        return locals()

    @publish
    def logged_out(self, user_name):
        return locals()

    @staticmethod
    @coroutine  # Python 3.11 forces it: asyncio.coroutine is gone (docs/migrating.md)
    def _create_user_name(user_name, password):
        yield from sleep(0.01)
        return "{} {}".format(user_name, password)


if __name__ == "__main__":
    http = UserHTTPService("127.0.0.1", 0)
    tcp = UserTCPService("127.0.0.1", 0)
    Host.configure("User", registry_host="127.0.0.1", registry_port=int(sys.argv[1]))
    if len(sys.argv) > 2:
        Host.pubsub_url = sys.argv[2]
    Host.attach_http_service(http)
    Host.attach_tcp_service(tcp)
    Host.run()
