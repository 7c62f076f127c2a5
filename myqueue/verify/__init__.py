"""``myqueue verify``: a correctness checker users can run against a cluster.

It runs a bounded workload (``workload.py``: producers; ``consumers.py``: both kinds of consumer;
``values.py``: what is sent; ``progress.py``: where producers are held while a fault is prepared),
optionally injecting faults into a local cluster it runs itself (``faults.py``), records every
acknowledged produce and every delivery, and checks the history (``history.py``, pure) for lost,
duplicated and reordered messages. ``run`` (``runner.py``) does all of it and returns the
``Verdict``; the command line lives in ``myqueue/cli/verify.py``.
"""

from .faults import Fault, parse_faults
from .history import Ack, Delivery, History, Verdict, check
from .runner import run
from .workload import WorkloadConfig

__all__ = ["Ack", "Delivery", "Fault", "History", "Verdict", "WorkloadConfig", "check", "parse_faults", "run"]
