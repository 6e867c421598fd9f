"""``python -m wattfare_embed.consent_domain.revisions "what changed"``: the next revision of the wcd_ tables."""

import sys

from ...store._new_revision import main
from . import migrations

sys.exit(main(migrations))
