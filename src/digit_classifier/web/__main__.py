"""``python -m digit_classifier.web``: serve the drawing page (see ``server``)."""

import sys

from digit_classifier.web.server import main

sys.exit(main())
