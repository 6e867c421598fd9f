"""One app worker process for the cross-process tests: the embed, configured from the
environment (``WATTFARE_SECRET_KEY``, ``WATTFARE_DATABASE_URL``, …), mounted in Starlette and
served by uvicorn on the port given; ``--prometheus`` serves ``/metrics`` too."""

from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from wattfare_embed import Telemetry, Wattfare

if __name__ == "__main__":
    telemetry = Telemetry(prometheus="--prometheus" in sys.argv)
    app = Starlette(routes=[Mount("/wattfare", app=Wattfare(app_name="worker", telemetry=telemetry))])
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
