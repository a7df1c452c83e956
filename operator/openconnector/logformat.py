"""Log output: plain text for people, one JSON object per line for cluster log pipelines
(``--log-format json``), and Kopf's per-event success lines moved to DEBUG."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Final

import orjson

__all__ = ["TEXT_FORMAT", "JsonFormatter", "KopfSuccessToDebug", "configure_logging"]

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_KOPF_SUCCESS: Final = re.compile(r"Handler '[^']*' succeeded\.")


class JsonFormatter(logging.Formatter):
    """time, level, logger, message; the Kubernetes object Kopf logged about; the traceback, if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        k8s_ref = getattr(record, "k8s_ref", None)  # Kopf's object loggers add it
        if isinstance(k8s_ref, dict):
            entry["object"] = {k: v for k, v in k8s_ref.items() if k in ("kind", "namespace", "name")}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


class KopfSuccessToDebug(logging.Filter):
    """Kopf logs "Handler 'on_event' succeeded." at INFO for every watch event, naming no resource; our
    handlers only hand the event over, so those lines are DEBUG (shown with --log-level DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and _KOPF_SUCCESS.fullmatch(record.getMessage()):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


def configure_logging(level: str, log_format: str = "text") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("kopf.objects").addFilter(KopfSuccessToDebug())
