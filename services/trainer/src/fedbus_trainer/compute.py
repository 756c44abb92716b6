"""The trainer's compute thread: training runs below the priority of everything else.

A trainer's event loop answers heartbeats, downloads the global model, uploads the update and
publishes progress; on a node shared with other trainers or services that work must not
queue behind training, or every round waits on whichever process the scheduler last
preferred. Training therefore runs in one dedicated thread whose nice value is raised (a
lower priority, Linux ``setpriority`` on the thread id). On a node of its own a trainer
trains as fast as before: nice only matters when the CPU is contended, and only among threads
the kernel schedules as one group (one container's cgroup, or one session under autogroup
scheduling); between groups the groups' weights decide.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

__all__ = ["compute_executor", "lower_thread_priority"]

log = logging.getLogger(__name__)


def compute_executor(nice: int) -> ThreadPoolExecutor:
    """One worker thread for training, ``nice`` steps below the calling process's priority."""
    return ThreadPoolExecutor(
        max_workers=1,
        thread_name_prefix="fedbus-train",
        initializer=lower_thread_priority,
        initargs=(nice,),
    )


def lower_thread_priority(nice: int) -> int | None:
    """Raise the calling thread's nice value by ``nice`` (capped at 19).

    Returns the thread's new nice value, or None when it was left alone (``nice`` is 0, or
    the platform has no per-thread priority: a warning says so and training goes on).
    """
    if nice <= 0:
        return None
    if not sys.platform.startswith("linux"):  # elsewhere the call would renice the process
        log.warning("training thread keeps its priority: per-thread nice is Linux's")
        return None
    tid = threading.get_native_id()
    try:
        target = min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice)
        os.setpriority(os.PRIO_PROCESS, tid, target)
    except OSError as exc:
        log.warning("training thread keeps its priority: %s", exc)
        return None
    return target
