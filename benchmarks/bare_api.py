"""The reference of the API benchmark: one endpoint that answers a small JSON object, served by the same
uvicorn with the same flags as `kat-scheduler api` (kat_scheduler.server.serve.run_app).

    python -m benchmarks.bare_api --port 8001
"""

from __future__ import annotations

import argparse

from fastapi import FastAPI

from kat_scheduler.config import load_settings
from kat_scheduler.server.serve import run_app


def bare_app() -> FastAPI:
    app = FastAPI()

    @app.post("/bare")
    async def bare() -> dict[str, object]:
        return {"ok": True, "results": []}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bare_api")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    run_app(bare_app(), load_settings(), args.host, args.port)


if __name__ == "__main__":
    main()
