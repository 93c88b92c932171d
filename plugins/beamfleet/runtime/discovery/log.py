"""JSON log lines with stable keys: ``ts``, ``level``, ``event``, then event fields.

The cookie is never passed to the logger; values are rendered with ``str`` only.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO


class JsonLog:
    """Writes one JSON object per line.

    Example::

        log = JsonLog()
        log.info("peer_connected", node="app@10.0.0.1", peer="app@10.0.0.2")
    """

    def __init__(self, stream: TextIO | None = None, *, level: str = "info") -> None:
        self._stream = stream or sys.stderr
        self._debug = level == "debug"

    def _emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        record: dict[str, Any] = {"ts": round(time.time(), 3), "level": level, "event": event}
        record.update(fields)
        self._stream.write(json.dumps(record, default=str, sort_keys=False) + "\n")
        self._stream.flush()

    def debug(self, event: str, **fields: Any) -> None:
        if self._debug:
            self._emit("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit("error", event, fields)
