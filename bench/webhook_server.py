"""The production webhook app plus a `/bare` baseline route, served exactly as `package-injector serve` does.

`/bare` reads the body the same way (`request.body()`), parses it as JSON and echoes it back as JSON: the
fixed cost of HTTPS + uvicorn + FastAPI routing + JSON in and out, without the admission logic. Both routes
live in one process, on one port, behind the same TLS listener (`webhook.server.serve_app`), so their ratio
isolates what `/mutate` adds.

Settings come from the usual PACKAGE_INJECTOR_* environment variables.
"""

from __future__ import annotations

import json

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from webhook.app import create_app
from webhook.server import serve_app
from webhook.settings import Settings, load_settings


def bench_app(settings: Settings) -> FastAPI:
    app = create_app(settings)

    @app.post("/bare")
    async def bare(request: Request) -> Response:
        body = json.loads(await request.body())
        return JSONResponse(body)

    return app


def main() -> None:
    settings = load_settings()
    serve_app(bench_app(settings), settings)


if __name__ == "__main__":
    main()
