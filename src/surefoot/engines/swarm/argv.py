"""A swarm's command lines, run on its manager or a node: pure functions (nothing runs here).
Table-tested in tests/test_swarm_logic.py."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

STACK_LABEL = "com.docker.stack.namespace"


def stack_deploy_argv(stack_file: Path, stack: str, *, prune: bool, registry_auth: bool) -> list[str]:
    """``docker stack deploy`` of a stack file that names every image by reference
    (``--resolve-image never``: the nodes do not ask a registry for what they have)."""
    return ["docker", "stack", "deploy", "--resolve-image", "never", *(["--prune"] if prune else []),
            *(["--with-registry-auth"] if registry_auth else []), "--compose-file", str(stack_file), stack]


def service_logs_argv(service: str) -> list[str]:
    """A service's log, followed, its standard error too (a task's stack traces): the follower
    reads standard output."""
    return ["sh", "-c", 'exec docker service logs --follow --raw "$1" 2>&1', "surefoot", service]


def node_id_argv() -> list[str]:
    """The swarm node id of the daemon it runs on."""
    return ["docker", "info", "--format", "{{.Swarm.NodeID}}"]


# The image-id references (``...:id-<id>``, stackfile.image_ref) under $2 that are not among the
# other arguments, untagged (never forced); the exited containers of the stack ($1) still on
# one, kept by the swarm's task history, go first; a running container keeps its image. The
# release pins (``...:rN``) are not touched: cleanup's own step removes those past keeping.
# Prints each reference removed.
_UNTAG_SCRIPT = """\
stack=$1; prefix=$2; shift 2
docker images --format '{{.Repository}}:{{.Tag}}' --filter "reference=$prefix/*" | while read -r ref; do
  case "$ref" in *:id-*) ;; *) continue ;; esac
  case " $* " in *" $ref "*) continue ;; esac
  docker ps -aq --filter status=exited --filter "label=com.docker.stack.namespace=$stack" \\
      --filter "ancestor=$ref" | xargs -r docker rm >/dev/null 2>&1
  docker rmi "$ref" >/dev/null 2>&1 && echo "$ref"
done
true"""


def untag_stale_argv(stack: str, prefix: str, keep: Sequence[str]) -> list[str]:
    return ["sh", "-c", _UNTAG_SCRIPT, "surefoot", stack, prefix, *sorted(keep)]


# ``status``: the stack's services, tasks and nodes in one command (services and tasks as the
# API gives them; a node per line: its id and hostname), sections split by a line "@@".
_STATUS_SCRIPT = """\
docker service ls -q --filter "label=com.docker.stack.namespace=$1" | xargs -r docker service inspect
echo @@
docker stack ps -q "$1" 2>/dev/null | xargs -r docker inspect
echo @@
docker node ls --format '{{.ID}} {{.Hostname}}' 2>/dev/null
true"""


def stack_status_argv(stack: str) -> list[str]:
    return ["sh", "-c", _STATUS_SCRIPT, "surefoot", stack]
