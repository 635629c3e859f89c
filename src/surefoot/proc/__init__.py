"""Running child processes that a signal can stop, whole.

Every child runs in its own process group (so a Ctrl-C on the terminal reaches
surefoot alone, which then decides), dies with surefoot if surefoot is killed
(``PR_SET_PDEATHSIG``), and is stopped group-wide when the deployment is
cancelled or its timeout passes. Commands are argument lists, never shell strings.
"""

from surefoot.proc.groups import KILL_GRACE, CancelToken, terminate_group, trace
from surefoot.proc.runner import Captured, Exchanged, Feed, Processes, ProcessRunner, capture_once

__all__ = ["KILL_GRACE", "CancelToken", "Captured", "Exchanged", "Feed", "ProcessRunner", "Processes", "capture_once",
           "terminate_group", "trace"]
