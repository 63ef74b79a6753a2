"""uvicorn's package without its command line, which the session server never runs."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

#: What the uvicorn package exports that its core modules hold (uvicorn's lifespan does
#: `from uvicorn import Config`); anything else runs the package's own __init__ first.
CORE = {"Config": "uvicorn.config", "Server": "uvicorn.server"}


def import_without_cli() -> None:
    """Register the uvicorn package without running its __init__ until a name needs it.

    uvicorn/__init__ imports uvicorn.main, its command line: click and the reload and worker
    supervisors (watchfiles, multiprocessing), ~45 ms of a session pod's ~0.5 s start-up
    that serving an app from Python never uses. The package is created from its spec with its
    search path, so `uvicorn.config`, `uvicorn.server` and the protocols import as usual;
    `Config` and `Server` come from their modules, and any other name (`uvicorn.run`,
    `__version__`) runs the real __init__, so nothing is lost. No-op once uvicorn is loaded.
    """
    if "uvicorn" in sys.modules:
        return
    spec = importlib.util.find_spec("uvicorn")
    if spec is None or spec.loader is None:
        return  # let the ordinary import report it
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def attribute(name: str) -> Any:
        if name in CORE:
            value = getattr(importlib.import_module(CORE[name]), name)
            setattr(package, name, value)
            return value
        if name.startswith("__") and name not in ("__version__", "__all__"):
            raise AttributeError(name)  # probes such as inspect's `__wrapped__`
        delattr(package, "__getattr__")
        loader.exec_module(package)
        return getattr(package, name)

    package.__getattr__ = attribute  # type: ignore[method-assign]
    sys.modules["uvicorn"] = package
