"""Where the browser tests put their screenshots.

The README's pictures in docs/images are refreshed only when asked (`make screenshots`, which sets
WATTFARE_SCREENSHOTS); an ordinary run writes them to a temporary directory, so `make test` leaves
the checkout as it found it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

README_IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"
_SCRATCH = Path(tempfile.gettempdir()) / "wattfare-screenshots"
SCREENSHOTS = README_IMAGES if os.environ.get("WATTFARE_SCREENSHOTS") else _SCRATCH
