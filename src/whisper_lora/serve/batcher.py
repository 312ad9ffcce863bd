"""Requests that arrive together are decoded together: one worker thread, batches by job.

The first request of a batch waits up to `wait` seconds for others (a few milliseconds: much
less than a decode), up to `max_batch` requests. The batch is split by job (model and options:
one adapter, one task, ... per decode call) and each part decoded in one call. A part that fails
is decoded again one request at a time, so one bad request fails alone.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from typing import Callable

log = logging.getLogger(__name__)


class Batcher:
    def __init__(self, decode: Callable[[object, list, list[str]], list], max_batch: int = 16, wait: float = 0.02):
        self.decode = decode  # decode(job, audios, names) -> one result per audio, in order
        self.max_batch = max_batch
        self.wait = wait
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="whisper-lora-batcher", daemon=True)
        self._thread.start()

    def submit(self, job, audio, name: str) -> Future:
        """A Future of the request's result; decoded with the next batch."""
        future: Future = Future()
        self._queue.put((job, audio, name, future))
        return future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, deadline = [first], time.monotonic() + self.wait
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # close after this batch
                    break
                batch.append(item)
            by_job: dict = {}
            for item in batch:
                by_job.setdefault(item[0], []).append(item)
            for job, items in by_job.items():
                self._decode(job, items)

    def _decode(self, job, items) -> None:
        items = [item for item in items if item[3].set_running_or_notify_cancel()]  # client gone: skip
        if not items:
            return
        try:
            results = self.decode(job, [audio for _, audio, _, _ in items], [name for _, _, name, _ in items])
        except Exception as exc:  # noqa: BLE001 - a server outlives any one request
            if len(items) == 1:
                log.exception("request %s failed", items[0][2])
                items[0][3].set_exception(exc)
                return
            for item in items:  # find the one that fails; the others still get their answer
                self._decode_alone(job, item)
            return
        for (_, _, _, future), result in zip(items, results, strict=True):
            future.set_result(result)

    def _decode_alone(self, job, item) -> None:
        _, audio, name, future = item
        try:
            future.set_result(self.decode(job, [audio], [name])[0])
        except Exception as exc:  # noqa: BLE001
            log.exception("request %s failed", name)
            future.set_exception(exc)
