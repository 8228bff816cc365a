"""Calls to the Hub that survive a flaky network: retries with backoff, and one-line errors for what will not pass."""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from huggingface_hub.errors import HfHubHTTPError

from ..errors import HubPermissionError, HubUnreachableError, InvalidTokenError

logger = logging.getLogger(__name__)
T = TypeVar("T")


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Dropped connections and timeouts of the HTTP client huggingface_hub uses (httpx in 1.x, httpx2 in 2.x)."""
    errors: list[type[BaseException]] = [ConnectionError]
    for client in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(client).TransportError)
        except ImportError:
            continue
    return tuple(errors)


_TRANSPORT_ERRORS = _transport_errors()


def with_retries(call: Callable[[], T], *, what: str, endpoint: str, attempts: int = 5, wait: float = 1.0) -> T:
    """Run `call`, retrying server errors (5xx) and connection failures with exponential backoff, and turning
    authentication failures into one-line errors. The token is never part of any message."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except HfHubHTTPError as error:
            status = error.response.status_code if error.response is not None else None
            if status == 401:
                raise InvalidTokenError(
                    f"{endpoint} rejected the token (401) while trying to {what}: it is invalid or expired"
                ) from None
            if status == 403:
                raise HubPermissionError(
                    f"{endpoint} refused to {what} (403): the token has no write access there"
                ) from None
            if status is None or status < 500 or attempt == attempts:
                if status is not None and status >= 500:
                    raise HubUnreachableError(
                        f"{endpoint} kept failing ({status}) to {what}, {attempts} attempts; try again later"
                    ) from None
                raise
        except _TRANSPORT_ERRORS as error:
            if attempt == attempts:
                raise HubUnreachableError(
                    f"cannot reach {endpoint} to {what} after {attempts} attempts ({type(error).__name__})"
                ) from None
        logger.warning("retrying %s (attempt %d of %d)", what, attempt + 1, attempts)
        time.sleep(wait * 2 ** (attempt - 1))
    raise AssertionError("unreachable")
