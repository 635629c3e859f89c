"""The command line. ``main`` is the console script: ``surefoot status`` (what operators run in a
loop while a deployment goes on) is answered without loading the CLI library when its arguments
are plain (:mod:`surefoot.cli.quick`); every other command, and anything unusual about those
arguments, goes to the commands declared with click (:mod:`surefoot.cli.app`)."""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    from surefoot.cli.quick import hoisted, status_request

    args = hoisted(sys.argv[1:] if argv is None else argv)
    request = status_request(args, os.environ)
    if request is not None:
        from surefoot.cli.quick import run_status

        return run_status(*request)
    from surefoot.cli.app import run

    return run(args)
