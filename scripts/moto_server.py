"""moto's server on a free loopback port, with DynamoDB requests serialized.

moto's DynamoDB backend is not thread-safe: TransactWriteItems checks its conditions, then
writes, with no lock, so two concurrent transactions can both pass their conditions. DynamoDB
itself applies a transaction atomically; serializing DynamoDB requests restores that, which the
concurrency tests (one winner out of many conditional writes) rely on. Other services stay
concurrent, because some of them (Step Functions) call back into this server while a request runs.

With `--execute-state-machines`, Step Functions runs the definitions it is given (moto's ASL
interpreter) instead of leaving executions RUNNING: the switch is global to the server, so the
tests that need it get a server of their own rather than flipping another's.

Prints the chosen port on stdout, then serves until SIGTERM/SIGINT.
"""

import os
import signal
import sys
import threading

from werkzeug.serving import make_server

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

from moto.core.config import default_user_config

args = [a for a in sys.argv[1:] if not a.startswith("--")]
host = args[0] if args else "127.0.0.1"
if "--execute-state-machines" in sys.argv:
    default_user_config["stepfunctions"] = {"execute_state_machine": True}
app = DomainDispatcherApplication(create_backend_app)
dynamodb_lock = threading.Lock()


def serialized(environ, start_response):
    if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
        with dynamodb_lock:
            return list(app(environ, start_response))
    return app(environ, start_response)


server = make_server(host, 0, serialized, threaded=True, request_handler=MotoRequestHandler)
# Step Functions' ASL runner calls back into moto through MOTO_PORT.
os.environ["MOTO_PORT"] = str(server.server_port)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print(server.server_port, flush=True)
server.serve_forever()
