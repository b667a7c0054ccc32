"""The worker: APScheduler wakes the sweep; the database does the rest.

Jobs: the deadline sweep, and the jobs the caller adds (the notice dispatcher). One in-memory
job store (never shared: a shared APScheduler store runs jobs twice), one sweep
job at a configurable interval that also runs at start-up, ``coalesce=True`` and
``misfire_grace_time=None`` so a late wake-up is never dropped, ``max_instances=1``. Any number
of workers may run against one PostgreSQL: the sweep's ``SKIP LOCKED`` claim shares the rows.
SIGTERM or SIGINT stops it cleanly: the batch in hand is finished and committed, then it exits.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Mapping
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from engine.runner import Runner
from engine.sweeper import SweepReport, sweep

__all__ = ["Worker"]

log = logging.getLogger("regul.worker")


class Worker:
    """Runs the worker's jobs (today: the deadline sweep) on a schedule or once."""

    def __init__(
        self,
        runner: Runner,
        *,
        interval: float,
        batch_size: int,
        on_sweep: Callable[[SweepReport], None] = lambda _r: None,
        jobs: Mapping[str, Callable[[], object]] | None = None,
    ) -> None:
        self.runner, self.interval, self.batch_size = runner, interval, batch_size
        self.on_sweep = on_sweep
        self.jobs = dict(jobs or {})  # other jobs on the same schedule (the notice dispatcher)
        self.stopping = threading.Event()

    def _job(self) -> None:
        try:
            report = sweep(
                self.runner, batch_size=self.batch_size, should_stop=self.stopping.is_set
            )
        except Exception:  # a failed sweep is logged and retried at the next interval
            log.exception("sweep failed")
            return
        self.on_sweep(report)

    def run_once(self) -> tuple[SweepReport, dict[str, object]]:
        """Every job of the worker, once (for cron-style deployments and scripts)."""
        report = sweep(self.runner, batch_size=self.batch_size, should_stop=self.stopping.is_set)
        self.on_sweep(report)
        return report, {name: job() for name, job in self.jobs.items()}

    def _other(self, name: str) -> None:
        try:
            self.jobs[name]()
        except Exception:  # logged; the next interval tries again
            log.exception("job %s failed", name)

    def run_forever(self, *, install_signals: bool = True) -> None:
        """Sweep at start-up and every ``interval`` seconds until ``stop()`` or a signal."""
        if install_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, self._on_signal)
        scheduler = BackgroundScheduler(
            jobstores={"default": MemoryJobStore()},
            # one thread per job: a long dispatch never holds up the sweep (max_instances=1
            # still keeps each job single)
            executors={"default": ThreadPoolExecutor(1 + len(self.jobs))},
            job_defaults={"coalesce": True, "misfire_grace_time": None, "max_instances": 1},
            timezone="UTC",
        )
        scheduler.add_job(
            self._job,
            IntervalTrigger(seconds=self.interval),
            id="sweep",
            next_run_time=self.runner.clock.now(),  # also at start-up
        )
        for name in self.jobs:
            scheduler.add_job(
                self._other,
                IntervalTrigger(seconds=self.interval),
                args=[name],
                id=name,
                next_run_time=self.runner.clock.now(),
            )
        scheduler.start()
        log.info("worker started: sweep every %s s", self.interval)
        try:
            self.stopping.wait()
        finally:
            scheduler.shutdown(wait=True)  # the batch in hand finishes and commits
            log.info("worker stopped")

    def stop(self) -> None:
        self.stopping.set()

    def _on_signal(self, signum: int, _frame: Any) -> None:
        log.info("signal %s: finishing the batch in hand", signum)
        self.stopping.set()
