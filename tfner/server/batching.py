"""Dynamic batching: concurrent requests merged into one model call.

Requests that name the same servable and signature wait in one queue. A batch
thread takes a queue's oldest requests, as many as fit in `max_batch_size`
rows, as soon as either the queue holds a full batch or its oldest request
has waited `batch_timeout_s`. The inputs are concatenated along dimension 0,
padded up to the next `allowed_batch_sizes` entry by repeating the first row,
run once, and the outputs are sliced back per request along dimension 0.

A worked example, max_batch_size 8, allowed_batch_sizes [2, 4, 8]:

    queued requests (rows)   3, 1, 2, 4
    batch taken              3 + 1 + 2 = 6 rows  (adding 4 would make 10 > 8)
    padded to                8 rows (rows 6, 7 repeat row 0)
    outputs split            [0:3] [3:4] [4:6]; rows 6..7 are dropped
    left queued              the 4-row request, for the next batch

The batcher never validates: callers check each request before `submit()`,
so a malformed request fails alone and never poisons a batch. A request whose
deadline passed while queued is dropped without running.
"""

import collections
import logging
import math
import threading
import time

import numpy as np

log = logging.getLogger("tfner.serve")


class QueueFullError(Exception):
    """The queue already holds max_enqueued_batches batches' worth of rows."""


class DeadlineExpiredError(Exception):
    """The request's deadline passed before its batch ran."""


class BatcherStoppedError(Exception):
    """The batcher is shutting down and takes no new requests."""


class _Task:
    __slots__ = ("inputs", "rows", "deadline", "enqueued", "done", "result", "error", "abandoned")

    def __init__(self, inputs, rows, deadline):
        self.inputs = inputs
        self.rows = rows
        self.deadline = deadline
        self.enqueued = time.monotonic()
        self.done = threading.Event()
        self.result = None
        self.error = None
        self.abandoned = False

    def finish(self, result=None, error=None):
        self.result, self.error = result, error
        self.done.set()


class _Queue:
    def __init__(self, run_fn):
        self.run_fn = run_fn
        self.tasks = collections.deque()
        self.rows = 0


BatchStats = collections.namedtuple("BatchStats", "key requests rows padded_rows seconds")


class Batcher:
    """Merges concurrent requests per key into padded batches.

    Args:
        options: config.BatchOptions.
        on_batch: callable(BatchStats) or None. Called after each model call.
        on_expired: callable(key) or None. Called per request dropped because
            its deadline passed while it was queued.
    """

    def __init__(self, options, on_batch=None, on_expired=None):
        self.options = options
        self._on_batch = on_batch
        self._on_expired = on_expired
        self._cond = threading.Condition()
        self._queues = {}
        self._stopping = False
        self._draining = False
        self._threads = [
            threading.Thread(target=self._work, name=f"batch-{i}", daemon=True)
            for i in range(options.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    # ---- request side ----------------------------------------------------

    def submit(self, key, run_fn, inputs, deadline=None):
        """Queues one validated request and blocks until its slice is back.

        Args:
            key: hashable. Requests with equal keys may share a model call;
                it must pin the servable, the signature and the non-batch
                input shapes.
            run_fn: callable(dict of arrays) -> dict of arrays. The model call.
            inputs: dict of np.ndarray. Equal dimension 0 across inputs, at
                most max_batch_size rows.
            deadline: float or None. time.monotonic() after which the result
                is no use.

        Returns:
            dict of np.ndarray: this request's rows of every output.

        Raises:
            QueueFullError, DeadlineExpiredError, BatcherStoppedError, or
            whatever run_fn raised.
        """
        rows = len(next(iter(inputs.values())))
        if not 0 < rows <= self.options.max_batch_size:
            raise ValueError(f"a request must have 1..{self.options.max_batch_size} rows, got {rows}")
        task = _Task(inputs, rows, deadline)
        with self._cond:
            if self._stopping:
                raise BatcherStoppedError("the server is shutting down")
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = _Queue(run_fn)
            # Queue bound in batches, as TF Serving counts it: the batches the
            # queued rows would fill once this request joins.
            batches = math.ceil((queue.rows + rows) / self.options.max_batch_size)
            if batches > self.options.max_enqueued_batches:
                raise QueueFullError(
                    f"the batching queue is full ({queue.rows} texts waiting, "
                    f"max_enqueued_batches {self.options.max_enqueued_batches} x "
                    f"max_batch_size {self.options.max_batch_size}); retry with backoff"
                )
            queue.tasks.append(task)
            queue.rows += rows
            # Wake the batch threads only when this request changes what they
            # wait for: a new queue starts a timeout, a full queue is ready.
            # Otherwise the waiting thread's timeout already covers it, and a
            # wake-up per request would cost each request a thread switch.
            if len(queue.tasks) == 1 or queue.rows >= self.options.max_batch_size:
                self._cond.notify_all()
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        if task.done.wait(timeout):
            if task.error is not None:
                raise task.error
            return task.result
        with self._cond:
            if not task.done.is_set():
                task.abandoned = True  # The batch thread drops it unrun.
        raise DeadlineExpiredError("the deadline passed while the request waited for a batch")

    # ---- batch threads ---------------------------------------------------

    def _work(self):
        while True:
            with self._cond:
                while True:
                    picked = self._take_ready()
                    if picked is not None:
                        break
                    if self._stopping and not self._queues:
                        return
                    self._cond.wait(self._next_timeout())
            key, run_fn, tasks = picked
            if tasks:
                self._run(key, run_fn, tasks)

    def _next_timeout(self):
        if not self._queues:
            return None
        oldest = min(q.tasks[0].enqueued for q in self._queues.values())
        return max(0.0, oldest + self.options.batch_timeout_s - time.monotonic())

    def _take_ready(self):
        """Pops the ready queue with the oldest head; caller holds the lock."""
        now = time.monotonic()
        ready = [
            (q.tasks[0].enqueued, key)
            for key, q in self._queues.items()
            if self._draining
            or q.rows >= self.options.max_batch_size
            or now - q.tasks[0].enqueued >= self.options.batch_timeout_s
        ]
        if not ready:
            return None
        _, key = min(ready)
        queue = self._queues[key]
        tasks, rows = [], 0
        while queue.tasks and rows + queue.tasks[0].rows <= self.options.max_batch_size:
            task = queue.tasks.popleft()
            queue.rows -= task.rows
            if task.abandoned or (task.deadline is not None and task.deadline <= now):
                task.finish(error=DeadlineExpiredError("the deadline passed before the batch ran"))
                if self._on_expired:
                    self._on_expired(key)
                continue
            tasks.append(task)
            rows += task.rows
        if not queue.tasks:
            del self._queues[key]
        return key, queue.run_fn, tasks

    def _padded_size(self, rows):
        for size in self.options.allowed_batch_sizes:
            if size >= rows:
                return size
        return rows

    def _run(self, key, run_fn, tasks):
        started = time.monotonic()
        rows = sum(t.rows for t in tasks)
        padded = self._padded_size(rows)
        try:
            inputs = {}
            for name in tasks[0].inputs:
                merged = np.concatenate([t.inputs[name] for t in tasks], axis=0)
                if padded > rows:
                    filler = np.repeat(merged[:1], padded - rows, axis=0)
                    merged = np.concatenate([merged, filler], axis=0)
                inputs[name] = merged
            outputs = run_fn(inputs)
            for name, value in outputs.items():
                if np.ndim(value) == 0 or len(value) != padded:
                    raise RuntimeError(
                        f"output {name!r} has shape {np.shape(value)}; batching needs "
                        f"dimension 0 == {padded}, the batch size (export batch-major outputs)"
                    )
            offset = 0
            for task in tasks:
                part = {n: v[offset:offset + task.rows] for n, v in outputs.items()}
                offset += task.rows
                task.finish(result=part)
        except Exception as e:  # The model failed for the whole batch.
            log.exception("batched model call failed (%d requests)", len(tasks))
            for task in tasks:
                if not task.done.is_set():
                    task.finish(error=e)
        if self._on_batch:
            self._on_batch(BatchStats(key, len(tasks), rows, padded, time.monotonic() - started))

    # ---- shutdown --------------------------------------------------------

    def drain(self):
        """Stops waiting for batches to fill: everything queued runs now."""
        with self._cond:
            self._draining = True
            self._cond.notify_all()

    def stop(self, timeout=None):
        """Refuses new requests, runs every queued one now, joins the threads."""
        with self._cond:
            self._stopping = True
            self._draining = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)

    def queued_rows(self):
        with self._cond:
            return sum(q.rows for q in self._queues.values())
