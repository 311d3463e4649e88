"""A daemon thread that calls a function every few seconds, in the process that starts it (after gunicorn's fork):
how buffered counts (BufferedCounters, TableQuota) reach the store while no request arrives."""
from __future__ import annotations

import threading
import time
from typing import Callable


def every(seconds: float, fn: Callable[[], None], *, name: str) -> None:
    """Call fn() every `seconds` from a daemon thread named `name`, for the life of the process."""
    def loop() -> None:
        while True:
            time.sleep(seconds)
            fn()

    threading.Thread(target=loop, name=name, daemon=True).start()
