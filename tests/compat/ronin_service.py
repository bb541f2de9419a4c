"""A vyked 2.x style stand-alone service (``Host.ronin = True``), run as its own process.

``python ronin_service.py``

It has no registry (the one it names is a port nobody listens on). Its HTTP route
``/users/{username}`` answers by itself; ``/ask`` calls another service through a client and
answers with the error the call raised. It prints ``ronin pid PID`` first.
"""

# ruff: noqa: UP008, UP032

import json
import os

from vyked import Host, HTTPService, Request, Response, TCPServiceClient, get, request


class UserClient(TCPServiceClient):
    def __init__(self):
        super(UserClient, self).__init__("UserService", 1)

    @request
    def create(self, user_name, password):
        return locals()


# "get" comes last: as a method name it hides the decorator in the rest of the class body
class RoninHTTPService(HTTPService):
    def __init__(self, ip, port):
        super(RoninHTTPService, self).__init__("Ronin", 1, ip, port)
        self.users = UserClient()
        self.clients = [self.users]

    @get(path="/ask")
    def ask(self, request: Request):
        try:
            yield from self.users.create("ann", "pw")
        except Exception as e:
            body = {"type": type(e).__name__, "message": str(e)}
        else:
            body = {"type": None}
        return Response(status=200, body=json.dumps(body).encode())

    @get(path="/users/{username}")
    def get(self, request: Request):
        return Response(status=200, body=("Hello {}".format(request.match_info["username"])).encode())


if __name__ == "__main__":
    print("ronin pid {}".format(os.getpid()), flush=True)
    Host.ronin = True
    Host.configure("Ronin", registry_host="127.0.0.1", registry_port=1)
    Host.attach_service(RoninHTTPService("127.0.0.1", 0))
    Host.run()
