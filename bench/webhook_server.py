"""The production webhook app plus a `/bare` baseline route, served exactly as `package-injector serve` does.

`/bare` reads the body the same way (`webhook.app.read_body`), parses it as JSON and echoes it back as
JSON (`send_json`), on the same plain-ASGI path that `POST /mutate` takes before FastAPI's layers: the
fixed cost of HTTPS + uvicorn + JSON in and out, without the admission logic. Both routes live in one
process, on one port, behind the same TLS listener (`webhook.server.serve_app`), so their ratio isolates
what `/mutate` adds. (Up to 76dc7f6 both went through FastAPI's routing and request objects.)

Settings come from the usual PACKAGE_INJECTOR_* environment variables.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from webhook.app import create_app, read_body, send_json
from webhook.server import serve_app
from webhook.settings import Settings, load_settings


class BenchApp:
    """`POST /bare` here, everything else to the admission app."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.limit = settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/bare" and scope["method"] == "POST":
            chunks, _ = await read_body(receive, self.limit)
            body = json.loads(b"".join(chunks))
            await send_json(send, 200, json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())
        else:
            await self.app(scope, receive, send)


def bench_app(settings: Settings) -> BenchApp:
    return BenchApp(create_app(settings), settings)


def main() -> None:
    settings = load_settings()
    serve_app(bench_app(settings), settings)


if __name__ == "__main__":
    main()
