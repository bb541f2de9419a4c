"""A vyked 2.x style subscriber, run as its own process by the compatibility tests.

``python account_service.py REGISTRY_PORT TAG STRATEGY [REDIS_URL]``

Its client of ``UserService`` takes ``password_changed`` with ``@xsubscribe(strategy=STRATEGY)``
(a 2.x strategy name: ``LEADER``, ``RANDOM``, ``DESIGNATION``, in any case; ``default`` for a
bare ``@xsubscribe``) and ``logged_out`` with ``@subscribe``, whose handler raises a
``BaseException`` subclass for the user ``boom``. Each handled event prints
``TAG got EVENT USER``.
"""

# ruff: noqa: UP008, UP032

import asyncio
import sys

from vyked import Host, TCPService, TCPServiceClient, subscribe, xsubscribe

REGISTRY_PORT, TAG, STRATEGY = int(sys.argv[1]), sys.argv[2], sys.argv[3]
exclusive = xsubscribe if STRATEGY == "default" else xsubscribe(strategy=STRATEGY)


class UserException(BaseException):
    pass


class UserClient(TCPServiceClient):
    def __init__(self):
        super(UserClient, self).__init__("UserService", 1)

    @exclusive
    def password_changed(self, user_name):
        yield from asyncio.sleep(0)
        print("{} got password_changed {}".format(TAG, user_name), flush=True)

    @subscribe
    def logged_out(self, user_name):
        yield from asyncio.sleep(0)
        if user_name == "boom":
            raise UserException("cannot log {} out".format(user_name))
        print("{} got logged_out {}".format(TAG, user_name), flush=True)


class AccountService(TCPService):
    def __init__(self, host, port):
        super(AccountService, self).__init__("AccountService", 1, host, port)


if __name__ == "__main__":
    tcp = AccountService("127.0.0.1", 0)
    tcp.clients = [UserClient()]
    Host.configure("Account" + TAG, registry_host="127.0.0.1", registry_port=REGISTRY_PORT)
    if len(sys.argv) > 4:
        Host.pubsub_url = sys.argv[4]
    Host.attach_service(tcp)
    Host.run()
