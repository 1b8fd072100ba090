"""What a ``.mar`` carries: the networks, the preprocessing, request-to-response inference.

``scripts/archive.py`` packs this folder whole. It may import only the standard library,
torch, torchvision, numpy, Pillow and pyspng (``tests/test_layout.py`` checks), so that serving
never needs Lightning, Hydra or anything else of training.
"""
