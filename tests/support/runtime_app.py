"""A tiny admission-port app for the server runtime tests, run as `python -m tests.support.runtime_app`.

With `--real` it serves the real admission app instead (`webhook.server.serve`), without the CLI.
The tiny app lets the runtime (TLS reload, probes, graceful shutdown) be tested with a request whose
duration the test controls (`GET /slow?delay=S`), independent of the admission logic.
Settings come from the environment.
"""

from __future__ import annotations

import asyncio
import sys

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from webhook.server import serve, serve_app
from webhook.settings import load_settings


async def slow(request: Request) -> Response:
    delay = float(request.query_params.get("delay", "0"))
    await asyncio.sleep(delay)
    return JSONResponse({"slept": delay})


app = Starlette(routes=[Route("/slow", slow, methods=["GET"])])

if __name__ == "__main__":
    if "--real" in sys.argv[1:]:
        serve(load_settings())
    else:
        serve_app(app, load_settings())
