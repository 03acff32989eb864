"""gunicorn's settings for CRL Ops (read from the working directory, where the documented command runs: gunicorn's
default config file), beside the command line's (`-w`, `--threads`, `-b`), which take precedence.

Keep-alive connections are closed after WEB_KEEPALIVE_REQUESTS requests each (default 100; 0: never), as nginx's
``keepalive_requests`` does. A keep-alive connection stays with the worker process that accepted it, and when a
client (a load balancer's pool, a load generator) opens its connections at once, one worker may accept most of them
while the other idles: measured on 2 cores, 16 connections, one worker at 91% of a core and the other at 14%, the
server at half its rate in that run (bench/README.md, `api_load.py`). A closed connection is opened again by the
client and accepted by whichever worker's loop gets to it first, most often an idle one: the load evens out within
a few hundred requests, for one new TCP connection per 100 requests.
"""
import os


def _keepalive_requests() -> int:
    value = os.environ.get("WEB_KEEPALIVE_REQUESTS", "").strip()
    try:
        return max(int(value), 0) if value else 100
    except ValueError:
        raise SystemExit(f"WEB_KEEPALIVE_REQUESTS must be a whole number of requests (0: no limit), got {value!r}")


KEEPALIVE_REQUESTS = _keepalive_requests()


def pre_request(worker, req):
    """gunicorn's hook before each request: the connection's last request is answered with `Connection: close`
    (``req.req_number`` counts the requests of its connection from 1)."""
    if KEEPALIVE_REQUESTS and req.req_number % KEEPALIVE_REQUESTS == 0:
        req.must_close = True
