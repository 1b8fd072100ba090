"""Start or stop TorchServe (and, with ``--page``, the drawing page) with the project's config.

    python scripts/serve.py start [--page] [--config configs/torchserve/config.properties] [--timeout 120]
    python scripts/serve.py status
    python scripts/serve.py stop

``start`` runs ``torchserve --start`` in the background and returns once ``/ping`` is
healthy and every model named in ``load_models`` (or ``--models``) has ``minWorkers``
READY workers; ``--page`` also starts the drawing page on ``--page-port`` (8000) in the
background. Logs go to ``--logs`` (logs/torchserve). TorchServe keeps its pid file in the
temp directory, so ``stop`` (or ``torchserve --stop``) stops the server started with the
same TMPDIR; it also stops the page if one was started. Exit status: 2 for a missing
config or archive or a server already running, 1 when TorchServe does not get ready.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from digit_classifier.serving.torchserve import DEFAULT_LOG_CONFIG, ServeError, SetupError, TorchServe
from digit_classifier.web import background


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--config", type=Path, default=Path("configs/torchserve/config.properties"))
    parser.add_argument("--model-store", type=Path, help="default: model_store from the config")
    parser.add_argument("--models", nargs="*", default=[], help="e.g. digit=digit.mar (default: load_models)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for readiness")
    parser.add_argument("--logs", type=Path, default=Path("logs/torchserve"), help="LOG_LOCATION")
    parser.add_argument(
        "--log-config",
        default=str(DEFAULT_LOG_CONFIG),
        help="log4j2.xml for the frontend (default: the project's; 'torchserve': TorchServe's own)",
    )
    parser.add_argument("--page", action="store_true", help="also start the drawing page")
    parser.add_argument("--page-port", type=int, default=8000)
    args = parser.parse_args(argv)
    log_config = None if args.log_config == "torchserve" else Path(args.log_config)
    server = TorchServe(Path.cwd(), args.config, args.logs, log_config, model_store=args.model_store)
    page_pid = args.logs / "page.pid"
    try:
        if args.action == "start":
            print(server.start(args.models, args.timeout))
            if args.page:
                url = background.start(args.page_port, server.inference_url, page_pid, args.logs / "page.log")
                print(f"Drawing page at {url}")
        elif args.action == "stop":
            if background.stop(page_pid):
                print("Drawing page stopped.")
            print(server.stop())
        else:
            ready, state = server.readiness(server.loaded_model_names(args.models))
            print(state)
            return 0 if ready else 1
    except SetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (ServeError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
