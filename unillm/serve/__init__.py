"""`unillm serve`: an OpenAI-compatible HTTP server over any engine (the `serve` extra).

    from unillm.serve import ServeConfig, create_app
    app = create_app(unillm.load("transformers", path), ServeConfig(served_model_name="m"))

Importing `unillm` does not import this package (nor FastAPI).
"""

from .app import create_app
from .config import ServeConfig
from .scheduler import DirectScheduler, MicroBatcher, QueueFullError

__all__ = ["DirectScheduler", "MicroBatcher", "QueueFullError", "ServeConfig", "create_app"]
