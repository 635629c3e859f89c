"""The pure parts of the swarm engine: the stack file made from compose config's model, the
gate's judgement of the swarm's answers, placement, and the target's settings."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from surefoot.config.targets import TargetSettings
from surefoot.engines.swarm.client import may_run
from surefoot.engines.swarm.stackfile import (
    SPEC_LABEL,
    escape,
    image_ref,
    migration_service,
    problems,
    render,
    spec_digest,
)
from surefoot.engines.swarm.state import CRASH_LOOP, ServiceState, SwarmGate, service_states

# What `docker compose config --format json` prints for a small project (values interpolated,
# `$` escaped as `$$`, ports in their long form, networks and volumes named by the project).
MODEL: dict[str, Any] = {
    "name": "shop",
    "networks": {"default": {"name": "shop_default", "ipam": {}}},
    "volumes": {"data": {"name": "shop_data"}, "unused": {"name": "shop_unused"}},
    "services": {
        "db": {
            "image": "postgres:16", "entrypoint": None, "command": None,
            "environment": {"PASSWORD": "pa$$word"},
            "networks": {"default": None},
            "volumes": [{"type": "volume", "source": "data", "target": "/var/lib/postgresql/data", "volume": {}}],
            "restart": "unless-stopped", "mem_limit": "536870912",
        },
        "api": {
            "build": {"context": "/src/api"}, "image": "shop-api", "pull_policy": "build",
            "depends_on": {"db": {"condition": "service_healthy", "required": True}},
            "container_name": "shop-api",
            "environment": {"GREETING": "v1"},
            "networks": {"default": None},
            "ports": [{"mode": "ingress", "host_ip": "127.0.0.1", "target": 8000, "published": "8080",
                       "protocol": "tcp"}],
            "deploy": {"replicas": 2, "resources": {}, "placement": {}},
        },
    },
}
IMAGES = {"db": "surefoot.local/shop/db:id-aaaaaaaaaaaa", "api": "surefoot.local/shop/api:id-bbbbbbbbbbbb"}


def test_the_stack_file_keeps_what_a_swarm_runs_and_says_what_it_left_out() -> None:
    stack = render(MODEL, IMAGES)
    data = stack.data
    assert data["version"] == "3.9" and "name" not in data
    api, db = data["services"]["api"], data["services"]["db"]
    assert api["image"] == IMAGES["api"] and db["image"] == IMAGES["db"]
    for key in ("build", "pull_policy", "depends_on", "container_name"):
        assert key not in api
    assert "entrypoint" not in db and "command" not in db  # null: the image's own
    assert db["environment"] == {"PASSWORD": "pa$$word"}  # compose config's escaping kept as it is
    assert db["deploy"]["restart_policy"] == {"condition": "any"}
    assert db["deploy"]["resources"]["limits"] == {"memory": "536870912"}
    assert "restart" not in db and "mem_limit" not in db
    assert api["ports"] == [{"mode": "ingress", "target": 8000, "published": 8080, "protocol": "tcp"}]
    assert api["networks"] == {"default": {}}
    assert "resources" not in api["deploy"] and "placement" not in api["deploy"]
    assert api["deploy"]["update_config"] == {"failure_action": "rollback"}  # the files set none
    assert data["networks"] == {"default": {}}  # the stack names it (shop_default)
    assert data["volumes"] == {"data": {}}  # only the volumes a service uses
    notes = "\n".join(stack.notes)
    assert "api: depends_on left out" in notes and "port 8080 is published on every address" in notes
    assert "db: memory set as deploy.resources.limits" in notes


def test_a_failure_action_the_file_sets_is_kept_and_external_names_stay() -> None:
    model = {"services": {"web": {"image": "x", "networks": {"front": None},
                                  "deploy": {"update_config": {"failure_action": "pause", "order": "start-first"}}}},
             "networks": {"front": {"name": "edge", "external": True}}}
    data = render(model, {}).data
    assert data["services"]["web"]["deploy"]["update_config"]["failure_action"] == "pause"
    assert data["networks"] == {"front": {"name": "edge", "external": True}}


def test_only_renders_the_services_asked_for() -> None:
    stack = render(MODEL, IMAGES, only=["db"])
    assert stack.services == ["db"]
    assert stack.data["volumes"] == {"data": {}}


def test_the_spec_label_follows_the_spec() -> None:
    first = render(MODEL, IMAGES).data["services"]
    again = render(MODEL, IMAGES).data["services"]
    assert spec_digest(first["api"]) == spec_digest(again["api"]) != ""
    assert first["api"]["deploy"]["labels"][SPEC_LABEL] == spec_digest(first["api"])
    changed = {**MODEL, "services": {**MODEL["services"],
                                     "api": {**MODEL["services"]["api"], "environment": {"GREETING": "v2"}}}}
    assert spec_digest(render(changed, IMAGES).data["services"]["api"]) != spec_digest(first["api"])
    assert spec_digest(render(changed, IMAGES).data["services"]["db"]) == spec_digest(first["db"])


def test_image_refs_are_named_after_the_image_id() -> None:
    assert image_ref("shop", "api", "sha256:0123456789abcdef") == "surefoot.local/shop/api:id-0123456789ab"
    assert image_ref("shop", "Web_UI", "sha256:ffffffffffff00") == "surefoot.local/shop/web_ui:id-ffffffffffff"


def test_the_migration_is_one_task_that_is_never_restarted() -> None:
    stack = render({**MODEL, "services": {**MODEL["services"], "api": {
        **MODEL["services"]["api"], "healthcheck": {"test": ["CMD", "true"]},
        "deploy": {"replicas": 2, "placement": {"constraints": ["node.role == manager"]}}}}}, IMAGES)
    data = migration_service(stack, "api", ["sh", "-c", "echo $HOME && migrate"], None)
    task = data["services"]["surefoot-migrate"]
    cleared = migration_service(stack, "api", ["migrate"], [])["services"]["surefoot-migrate"]
    assert cleared["entrypoint"] == ["migrate"] and "command" not in cleared
    assert task["command"] == ["sh", "-c", "echo $$HOME && migrate"]  # stack deploy interpolates again
    assert task["deploy"] == {"mode": "replicated", "replicas": 1, "restart_policy": {"condition": "none"},
                              "placement": {"constraints": ["node.role == manager"]}}
    assert "ports" not in task and "healthcheck" not in task
    assert task["image"] == IMAGES["api"] and task["environment"] == {"GREETING": "v1"}
    assert list(data["services"]) == ["surefoot-migrate"] and data["networks"] == {"default": {}}
    assert escape("a$b$$c") == "a$$b$$$$c"


def test_start_first_with_a_host_mode_port_is_refused() -> None:
    def model(mode: str, order: str) -> dict[str, Any]:
        return {"services": {"web": {"image": "x", "ports": [{"target": 80, "published": "8080", "mode": mode}],
                                     "deploy": {"update_config": {"order": order}}}}}

    found = problems(render(model("host", "start-first"), {}))
    assert len(found) == 1 and "web: update_config.order start-first with the host-mode port 8080" in found[0]
    assert problems(render(model("ingress", "start-first"), {})) == []
    assert problems(render(model("host", "stop-first"), {})) == []


# -- the gate ------------------------------------------------------------------------------------
def state(name: str = "s_web", spec: str = "new", desired: int = 2, running: int = 2,
          update: str | None = None, pending: dict[str, str] | None = None,
          failed: dict[str, str] | None = None) -> ServiceState:
    return ServiceState(name, "img", spec, desired, running, update, "", pending or {}, failed or {})


def gate(monitor: float = 3.0, pending_limit: float = 10.0) -> SwarmGate:
    return SwarmGate({"s_web": "new"}, monitor=monitor, pending_limit=pending_limit)


def test_the_gate_passes_once_every_task_stays_running_for_the_monitor_window() -> None:
    judge = gate()
    assert not judge.look([state(running=1, update="updating")], 0.0).converged
    assert not judge.look([state()], 1.0).converged  # the window starts
    assert not judge.look([state()], 3.5).converged
    assert not judge.look([state(running=1)], 3.6).converged  # a task went: the window ends
    assert not judge.look([state()], 4.0).converged
    verdict = judge.look([state()], 7.0)
    assert verdict.converged and verdict.failure is None


def test_a_task_failing_within_the_window_starts_it_again() -> None:
    judge = gate()
    assert not judge.look([state()], 0.0).converged
    # between two looks a task failed and was replaced: all running again, but not steady
    assert not judge.look([state(failed={"t1": "task: non-zero exit (1)"})], 2.5).converged
    assert not judge.look([state(failed={"t1": "task: non-zero exit (1)"})], 4.0).converged
    assert judge.look([state(failed={"t1": "task: non-zero exit (1)"})], 5.6).converged


def test_a_completed_update_was_monitored_by_the_swarm_already() -> None:
    assert gate().look([state(update="completed")], 0.0).converged


def test_a_service_still_on_its_old_spec_is_waited_for() -> None:
    verdict = gate().look([state(spec="old", update="completed")], 0.0)
    assert not verdict.converged and verdict.failure is None


def test_a_rollback_by_the_swarm_fails_at_once_naming_the_service() -> None:
    verdict = gate().look([state(spec="old", update="rollback_started")], 0.0)
    assert verdict.failure is not None and "rolled s_web back (rollback_started)" in verdict.failure


def test_a_paused_update_fails_at_once() -> None:
    verdict = gate().look([state(update="paused")], 0.0)
    assert verdict.failure is not None and "paused" in verdict.failure


def test_a_crash_loop_fails_at_once() -> None:
    judge = gate()
    few = {f"t{i}": "exit 1" for i in range(CRASH_LOOP - 1)}
    assert judge.look([state(running=1, failed=few)], 0.0).failure is None
    many = {**few, "last": "task: non-zero exit (1)"}
    verdict = judge.look([state(running=1, failed=many)], 1.0)
    assert verdict.failure is not None and f"{CRASH_LOOP} tasks of this release failed" in verdict.failure
    assert "the last: task: non-zero exit (1)" in verdict.failure


def test_any_rollback_after_the_deploy_fails_even_to_the_same_spec() -> None:
    # docker stack deploy clears the update status: a rollback seen later is this release's
    verdict = gate().look([state(update="rollback_completed")], 0.0)
    assert verdict.failure is not None and "rolled s_web back (rollback_completed)" in verdict.failure


def test_a_service_scaled_to_zero_is_converged() -> None:
    assert gate(monitor=0.0).look([state(desired=0, running=0)], 0.0).converged


def test_a_task_pending_past_the_limit_fails_with_the_swarms_reason() -> None:
    judge = gate(pending_limit=5.0)
    why = "no suitable node (scheduling constraints not satisfied on 3 nodes)"
    assert judge.look([state(running=1, pending={"t1": why})], 0.0).failure is None
    assert judge.look([state(running=1, pending={"t1": why})], 4.0).failure is None
    verdict = judge.look([state(running=1, pending={"t1": why})], 5.5)
    assert verdict.failure is not None and why in verdict.failure and "after 5s" in verdict.failure


def test_a_service_not_created_yet_is_waited_for() -> None:
    verdict = gate().look([], 0.0)
    assert not verdict.converged and "s_web not created yet" in verdict.progress


# -- what the API says ----------------------------------------------------------------------------
def service(ident: str, name: str, image: str, replicas: int | None, labels: dict[str, str]) -> dict[str, Any]:
    mode = {"Replicated": {"Replicas": replicas}} if replicas is not None else {"Global": {}}
    return {"ID": ident, "Spec": {"Name": name, "Labels": labels, "Mode": mode,
                                  "TaskTemplate": {"ContainerSpec": {"Image": image, "Env": ["A=2"]}}},
            "UpdateStatus": {"State": "updating", "Message": "update in progress"},
            "UpdatedAt": "2026-11-27T10:00:00.123456789Z"}


def task(ident: str, service_id: str, image: str, env: str, state_: str, desired: str = "running",
         node: str = "n1", err: str = "", created: str = "2026-11-27T10:00:01.5Z") -> dict[str, Any]:
    return {"ID": ident, "ServiceID": service_id, "NodeID": node, "DesiredState": desired, "CreatedAt": created,
            "Spec": {"ContainerSpec": {"Image": image, "Env": [env], "Isolation": "default"}},
            "Status": {"State": state_, "Err": err}}


def test_service_states_count_the_tasks_of_the_current_spec() -> None:
    services = [service("s1", "st_web", "img:2", 3, {SPEC_LABEL: "abc"}), service("s2", "st_proxy", "px", None, {})]
    tasks = [
        task("t1", "s1", "img:2", "A=2", "running"),
        task("t2", "s1", "img:1", "A=1", "running"),  # the old spec, still running
        task("t3", "s1", "img:2", "A=2", "pending", err="no suitable node"),
        task("t4", "s1", "img:2", "A=2", "failed", desired="shutdown", err="task: non-zero exit (1)"),
        # the same spec, failed before it was last deployed: an earlier deployment's, not counted
        task("t0", "s1", "img:2", "A=2", "failed", desired="shutdown", err="old", created="2026-11-27T09:59:59Z"),
        task("t5", "s2", "px", "A=2", "running", node="n1"),
        task("t6", "s2", "px", "A=2", "starting", node="n2"),
    ]
    web, proxy = service_states(services, tasks)[1], service_states(services, tasks)[0]
    assert (web.name, web.desired, web.running, web.spec) == ("st_web", 3, 1, "abc")
    assert web.pending == {"t3": "no suitable node"} and web.failed == {"t4": "task: non-zero exit (1)"}
    assert web.update_state == "updating" and web.row() == {
        "name": "st_web", "image": "img:2", "desired": 3, "running": 1, "update_state": "updating"}
    assert (proxy.name, proxy.desired, proxy.running) == ("st_proxy", 2, 1)  # global: a task a node


def test_a_global_service_no_node_may_run_is_unplaced() -> None:
    (nowhere,) = service_states([service("s3", "st_edge", "px", None, {})], [])
    assert nowhere.desired == 0 and nowhere.pending == {"service st_edge": "no node meets its placement constraints"}
    judge = gate(pending_limit=1.0)
    judge.wanted = {"st_edge": ""}
    assert judge.look([nowhere], 0.0).failure is None
    verdict = judge.look([nowhere], 2.0)
    assert verdict.failure is not None and "no node meets its placement constraints" in verdict.failure


def test_the_current_spec_is_the_tasks_content_not_the_engines_defaults() -> None:
    svc = service("s1", "st_web", "img:2", 1, {})
    svc["Spec"]["TaskTemplate"].update({"Resources": {"Limits": {"MemoryBytes": 1024}},
                                        "RestartPolicy": {"Condition": "any"}, "Runtime": "container"})
    svc["Spec"]["TaskTemplate"]["ContainerSpec"]["StopGracePeriod"] = 10_000_000_000  # filled in by the engine
    same = task("t1", "s1", "img:2", "A=2", "running")
    same["Spec"]["Resources"] = {"Limits": {"MemoryBytes": 1024}}
    other = task("t2", "s1", "img:2", "A=2", "running")
    other["Spec"]["Resources"] = {"Limits": {"MemoryBytes": 2048}}  # the old limit: not this spec
    (web,) = service_states([svc], [same, other])
    assert web.running == 1


def test_placement_on_role_and_hostname() -> None:
    manager = {"ID": "m", "Spec": {"Role": "manager"}, "Description": {"Hostname": "server-0"}}
    worker = {"ID": "w", "Spec": {"Role": "worker"}, "Description": {"Hostname": "server-1"}}
    assert may_run(manager, ["node.role == manager"]) and not may_run(worker, ["node.role == manager"])
    assert may_run(worker, ["node.role != manager", "node.hostname == server-1"])
    assert not may_run(worker, ["node.hostname==server-2"])
    assert may_run(worker, ["node.labels.zone == mars"])  # not known here: it may
    assert may_run(worker, [])


# -- the target's settings --------------------------------------------------------------------------
def test_a_swarm_target_validates_its_keys() -> None:
    settings = TargetSettings(host="ssh://root@m1", engine="swarm", nodes=["ssh://root@w1", "w2"])
    assert settings.engine == "swarm" and settings.nodes == ["ssh://root@w1", "w2"]
    with pytest.raises(ValidationError, match="nodes lists the other nodes of a swarm"):
        TargetSettings(host="m1", nodes=["w1"])
    with pytest.raises(ValidationError, match="a swarm schedules every service"):
        TargetSettings(host="m1", engine="swarm", services=["web"])
    with pytest.raises(ValidationError, match="engine"):
        TargetSettings(host="m1", engine="kubernetes")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="only ssh:// URLs"):
        TargetSettings(host="m1", engine="swarm", nodes=["http://w1"])


def test_what_compose_prints_and_a_stack_file_says_otherwise() -> None:
    model = {"services": {"web": {
        "image": "x", "scale": 3, "extra_hosts": ["db=10.0.0.5", "v6=::1"], "entrypoint": [], "command": ["run"],
        "deploy": {"resources": {"limits": {"cpus": 0.25}, "reservations": {"cpus": 0.1}}},
        "profiles": ["web"], "links": ["db"],
    }}}
    stack = render(model, {})
    web = stack.data["services"]["web"]
    assert web["deploy"]["replicas"] == 3 and "scale" not in web
    assert web["extra_hosts"] == ["db:10.0.0.5", "v6:::1"]
    assert web["entrypoint"] == ["run"] and "command" not in web  # [] is "the image's" on a swarm
    assert web["deploy"]["resources"] == {"limits": {"cpus": "0.25"}, "reservations": {"cpus": "0.1"}}
    notes = "\n".join(stack.notes)
    assert "web: profiles left out" in notes and "web: links left out" in notes


def test_network_mode_is_refused() -> None:
    found = problems(render({"services": {"web": {"image": "x", "network_mode": "host"}}}, {}))
    assert len(found) == 1 and "web: network_mode host has no equivalent in a stack" in found[0]


def test_secrets_and_configs_from_files_are_named_after_their_content() -> None:
    model = {"services": {"web": {"image": "x", "secrets": ["token"], "configs": [{"source": "site"}]}},
             "secrets": {"token": {"name": "shop_token", "file": "/p/token.txt"}, "unused": {"file": "/p/u"}},
             "configs": {"site": {"file": "/p/site.conf"}}}
    digests = {"/p/token.txt": "a" * 64, "/p/site.conf": "b" * 64}
    data = render(model, {}, stack="shop", file_digests=digests).data
    assert data["secrets"] == {"token": {"name": "shop_token_aaaaaaaaaaaa", "file": "/p/token.txt"}}
    assert data["configs"] == {"site": {"name": "shop_site_bbbbbbbbbbbb", "file": "/p/site.conf"}}
    changed = render(model, {}, stack="shop", file_digests={**digests, "/p/token.txt": "c" * 64}).data
    assert changed["secrets"]["token"]["name"] == "shop_token_cccccccccccc"
