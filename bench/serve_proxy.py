"""One proxy process for the benchmark: the embed mounted in Starlette, served by uvicorn.

``--telemetry MODE`` reports as one of ``bench.telemetry.MODES`` (default: ``Telemetry()``, which
with no OpenTelemetry provider set and no log handler at INFO reports nothing).
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from wattfare_embed import Telemetry, Wattfare

from .telemetry import MODES, telemetry_for


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--upstream-url", required=True)
    parser.add_argument("--secret-key", required=True)
    parser.add_argument("--publishable-key", required=True)
    parser.add_argument("--telemetry", choices=MODES)
    args = parser.parse_args()
    wf = Wattfare(
        secret_key=args.secret_key,
        publishable_key=args.publishable_key,
        database_url=args.database_url,
        upstream_url=args.upstream_url,
        app_name="bench",
        telemetry=telemetry_for(args.telemetry) if args.telemetry else Telemetry(),
    )
    app = Starlette(routes=[Mount("/wattfare", app=wf)])
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
