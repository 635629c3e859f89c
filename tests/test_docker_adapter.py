"""The Docker adapter's argument builders: one table, one row an operation."""

from __future__ import annotations

from pathlib import Path

import pytest

from surefoot.engines.compose import argv as a
from surefoot.engines.compose.argv import ComposeProject

T = ComposeProject("shop", Path("/srv/shop"), (Path("/srv/shop/compose.yaml"),), Path("/srv/shop/.env"))
C = ["docker", "compose", "--ansi", "never", "--progress", "plain", "--project-name", "shop",
     "--project-directory", "/srv/shop", "--file", "/srv/shop/compose.yaml", "--env-file", "/srv/shop/.env"]

TABLE = [
    (a.up_argv(T), [*C, "up", "--detach"]),
    (a.up_argv(T, ["db"]), [*C, "up", "--detach", "db"]),
    (a.up_argv(T, remove_orphans=True), [*C, "up", "--detach", "--remove-orphans"]),
    (a.up_argv(T, no_build=True, pull_never=True, remove_orphans=True),
     [*C, "up", "--detach", "--no-build", "--pull", "never", "--remove-orphans"]),
    (a.up_argv(T, ["web"], no_build=True, pull_never=True, no_deps=True, force_recreate=True),
     [*C, "up", "--detach", "--no-build", "--pull", "never", "--no-deps", "--force-recreate", "web"]),
    (a.build_argv(T, ["app", "worker"]), [*C, "build", "app", "worker"]),
    (a.pull_argv(T, ["db"]), [*C, "pull", "--ignore-buildable", "db"]),
    (a.pull_argv(T, ignore_buildable=False), [*C, "pull"]),
    (a.run_oneoff_argv(T, "web", ["migrate"], name="m", labels={"io.x": "migrate"}),
     [*C, "run", "--detach", "--no-deps", "--name", "m", "--label", "io.x=migrate", "web", "migrate"]),
    (a.run_oneoff_argv(T, "web", ["up"], name="m", entrypoint=[]),
     [*C, "run", "--detach", "--no-deps", "--name", "m", "--entrypoint", "", "web", "up"]),
    (a.run_oneoff_argv(T, "web", [], name="m", entrypoint=["sh", "-c", "a b"]),
     [*C, "run", "--detach", "--no-deps", "--name", "m", "--entrypoint", "sh -c 'a b'", "web"]),
    (a.logs_argv(T, "m"), ["docker", "logs", "--follow", "m"]),
    (a.service_logs_argv(T, ["db"], tail=20), [*C, "logs", "--no-color", "--tail", "20", "db"]),
    (a.service_logs_argv(T, follow=True), [*C, "logs", "--follow"]),
    (a.exec_argv(T, "abc", ["pg_dump", "-U", "x"]), ["docker", "exec", "abc", "pg_dump", "-U", "x"]),
    (a.image_rm_argv(T, ["shop-web:release-1"]), ["docker", "image", "rm", "shop-web:release-1"]),
    (a.prune_project_images_argv(T), ["docker", "image", "prune", "--force", "--filter", "dangling=true",
                                      "--filter", "label=com.docker.compose.project=shop"]),
    (a.config_argv(T), [*C, "config", "--format", "json"]),
    (a.config_hash_argv(T, "web"), [*C, "config", "--hash", "web"]),
    (a.create_beside_argv(T, "web", 4),
     [*C, "up", "--no-start", "--no-deps", "--no-recreate", "--scale", "web=4", "web"]),
    (a.network_connect_argv(T, "p_default", "c1", ["web", "p-web-2"]),
     ["docker", "network", "connect", "--alias", "web", "--alias", "p-web-2", "p_default", "c1"]),
    (a.network_connect_argv(T, "p_default", "c1"), ["docker", "network", "connect", "p_default", "c1"]),
    (a.network_disconnect_argv(T, "p_default", "c1"), ["docker", "network", "disconnect", "p_default", "c1"]),
    (a.start_argv(T, ["c1", "c2"]), ["docker", "start", "c1", "c2"]),
    (a.stop_argv(T, ["a1", "b2"], 2.5), ["docker", "stop", "--time", "3", "a1", "b2"]),
    (a.stop_argv(T, ["a1"], 0), ["docker", "stop", "--time", "0", "a1"]),
    (a.compose_version_argv(T), ["docker", "compose", "version", "--short"]),
    (a.server_version_argv(T), ["docker", "version", "--format", "{{.Server.Version}}"]),
    (a.label_ids_argv(T, "io.x=1"), ["docker", "ps", "--all", "--quiet", "--filter",
                                     "label=com.docker.compose.project=shop", "--filter", "label=io.x=1"]),
    (a.image_ls_argv(T), ["docker", "image", "ls", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]),
    (a.daemon_info_argv(T), ["docker", "info", "--format", "{{.ServerVersion}}"]),
    (a.image_inspect_id_argv(T, "pg@sha256:ab"), ["docker", "image", "inspect", "--format", "{{.Id}}", "pg@sha256:ab"]),
]


@pytest.mark.parametrize(("built", "expected"), TABLE)
def test_argv(built: list[str], expected: list[str]) -> None:
    assert built == expected


def test_events_follow_the_projects_containers_from_a_moment() -> None:
    argv = a.events_argv(T, 12.5)
    assert argv[:6] == ["docker", "events", "--since", "12.500000", "--format", "{{.Status}}"]
    assert "label=com.docker.compose.project=shop" in argv
    assert [argv[i + 1] for i, x in enumerate(argv) if x == "--filter" and argv[i + 1].startswith("event=")] \
        == [f"event={e}" for e in a.CONTAINER_EVENTS]


def test_another_engine_is_named_before_every_command() -> None:
    remote = ComposeProject("shop", Path("/srv"), (), docker=("docker", "--context", "prod"))
    assert a.logs_argv(remote, "m")[:3] == ["docker", "--context", "prod"]
    assert a.up_argv(remote)[:4] == ["docker", "--context", "prod", "compose"]


def _container(name: str, service: str, number: str = "1", replace: str = "") -> dict[str, object]:
    labels = {"com.docker.compose.service": service, "com.docker.compose.container-number": number}
    if replace:
        labels["com.docker.compose.replace"] = replace
    return {"Name": "/" + name, "Id": "id-" + name, "Config": {"Labels": labels}}


def test_an_interrupted_recreate_gives_the_name_back_or_removes_the_leftover() -> None:
    from surefoot.engines.compose.model import interrupted_recreates

    items = [
        _container("0123456789ab_shop-web-1", "web"),  # the proper name is free: take it back
        _container("abcdefabcdef_shop-db-1", "db"), _container("shop-db-1", "db"),  # taken: remove
        _container("0123456789ab_mine", "other"),  # an operator's name that only looks like one
    ]
    assert interrupted_recreates(items, "shop") == [
        ("rename", "0123456789ab_shop-web-1", "id-0123456789ab_shop-web-1", "shop-web-1"),
        ("remove", "abcdefabcdef_shop-db-1", "id-abcdefabcdef_shop-db-1", "shop-db-1"),
    ]


def test_parse_config_hash_and_image_ls() -> None:
    from surefoot.engines.compose.model import parse_config_hash, parse_image_ls

    assert parse_config_hash("db 111\nweb abc123\n", "web") == "abc123"
    assert parse_config_hash("db 111\n", "web") is None
    assert parse_image_ls("busybox:1 sha256:a\n<none>:<none> sha256:b\n") == {
        "busybox:1": "sha256:a", "<none>:<none>": "sha256:b"}
