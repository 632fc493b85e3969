"""aiohttp's server log, for the HTTP servers of the frontend (the AWS endpoint, the console) and
of hsm-supervisor: pass ``logger=HttpServerLog(log)`` to ``web.AppRunner``."""
from __future__ import annotations

import logging
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError


class HttpServerLog(logging.LoggerAdapter):
    """aiohttp's server log (``AppRunner(logger=...)``). A request that breaks HTTP itself (not
    HTTP at all, a bad chunk size, a header over its limits) is the sender's error, which aiohttp
    answers 400 before any handler runs: one info line here, where aiohttp would write a
    traceback at ERROR for each (a log anyone who can connect could fill). Anything else it
    reports (a handler that failed: a bug) stays an error with its traceback."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger, {})

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            self.logger.info("malformed HTTP refused", extra={
                "event": "http_refused", "remote": str(args[0]) if args else "",
                "error": f"{type(exc_info).__name__}: {str(exc_info.message).strip()[:200]}"})
        else:
            self.logger.error(msg, *args, exc_info=exc_info, **kwargs)
