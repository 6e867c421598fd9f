"""The npm package in js/: the committed wattfare.js is its fresh build, and the tarball holds the
entry points with their types (the unit and SSR tests themselves run in `make js-check`)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.node_toolchain import JS, REPO, make, require_node

STATIC = REPO / "wattfare_embed" / "static" / "wattfare.js"


def test_the_committed_wattfare_js_is_a_fresh_build_of_js_src() -> None:
    node = require_node()
    make("js")
    fresh = subprocess.run(
        [node, "scripts/build.mjs", "--browser-stdout"], cwd=JS, capture_output=True, text=True, timeout=120
    )
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout == STATIC.read_text("utf-8"), "run `make js-static` and commit the rebuilt wattfare.js"


def test_the_packed_tarball_has_each_entry_point_with_types_and_nothing_else() -> None:
    require_node()
    make("js")
    listing = subprocess.run(
        ["npm", "pack", "--dry-run", "--json", "--loglevel=error"], cwd=JS, capture_output=True, text=True, timeout=120
    )
    assert listing.returncode == 0, listing.stderr
    files = {entry["path"] for entry in json.loads(listing.stdout)[0]["files"]}
    for entry in ("client", "react", "element"):
        assert {f"dist/{entry}.js", f"dist/{entry}.d.ts"} <= files, entry
    assert "package.json" in files and "README.md" in files
    assert not any(path.startswith(("src/", "test/", "scripts/")) for path in files), files
    assert "dist/wattfare.js" not in files, "the no-build module is the Python package's, not npm's"
    manifest = json.loads((JS / "package.json").read_text())
    assert set(manifest["exports"]) == {".", "./client", "./react", "./element", "./package.json"}
    assert (JS / "package-lock.json").exists() and Path(JS / "package-lock.json").stat().st_size > 0
