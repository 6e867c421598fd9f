"""``python -m wattfare_embed.store.revisions "what changed"``: the next revision of the embed's tables."""

import sys

from .._new_revision import main
from . import migrations

sys.exit(main(migrations))
