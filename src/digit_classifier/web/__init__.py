"""The drawing page (``static/``) and the small server that hands it out and forwards its API."""
