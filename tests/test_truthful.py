"""Checks and messages that tell the truth (issue 12): `-c` is honoured by every command and
read against `-C`, status lists every configured phase, cleanup leaves other projects' images
alone, preflight sees what builds need, the migration's entrypoint, the pull summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import STACK_COMPOSE, STACK_CONFIG, Project, Projects, migrate_command


def surefoot(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "surefoot", *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd)


# -- item 8: -c ------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["status", "history", "deploy"])
def test_a_mistyped_config_file_is_an_error_for_every_command(tmp_path: Path, command: str) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: busybox\n")
    result = surefoot("-C", str(tmp_path), "-c", "nope.toml", command)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "nope.toml: configuration file not found (given with -c)" in result.stderr
    assert "Traceback" not in result.stderr
    assert "no releases yet" not in result.stdout


def test_a_relative_config_file_is_read_against_the_project_folder(tmp_path: Path) -> None:
    project = tmp_path / "app"
    (project / "deploy").mkdir(parents=True)
    (project / "deploy" / "prod.toml").write_text('[project]\nname = "named-in-prod"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for command in (["status", "--json"], ["history", "--json"]):
        result = surefoot("-C", str(project), "-c", "deploy/prod.toml", *command, cwd=elsewhere)
        assert result.returncode == 0, result.stderr
        assert '"named-in-prod"' in result.stdout
    # An absolute path is taken as it is.
    result = surefoot("-C", str(elsewhere), "-c", str(project / "deploy" / "prod.toml"), "status")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("named-in-prod: not-started")


# -- item 10: status lists every configured phase ------------------------------------------
def test_status_lists_verify_and_post_deploy_before_they_run(tmp_path: Path) -> None:
    (tmp_path / "surefoot.toml").write_text(
        '[phases.verify]\nurls = [{ url = "http://127.0.0.1:9/health" }]\n'
        '[phases.post-deploy]\ncommands = [{ command = ["true"] }]\n'
    )
    result = surefoot("-C", str(tmp_path), "status", "--json")
    assert result.returncode == 0, result.stderr
    phases = {p["name"]: p["status"] for p in json.loads(result.stdout)["phases"]}
    assert phases["verify"] == "pending"
    assert phases["post-deploy"] == "pending"
    table = surefoot("-C", str(tmp_path), "status").stdout
    assert "verify" in table and "post-deploy" in table
    # Without them configured, they are not listed.
    (tmp_path / "surefoot.toml").write_text("[phases.verify]\nurls = []\n")
    names = [p["name"] for p in json.loads(surefoot("-C", str(tmp_path), "status", "--json").stdout)["phases"]]
    assert names[-1] == "cleanup"


@pytest.mark.docker
def test_status_lists_verify_as_pending_while_a_deployment_stops_before_it(stack: Project) -> None:
    stack.write("surefoot.toml", stack.path.joinpath("surefoot.toml").read_text()
                + f'\n[phases.verify]\nurls = [{{ url = "http://127.0.0.1:{stack.port}/health" }}]\n'
                + '\n[hooks.health-wait]\nbefore = [["false"]]\n')
    result = stack.run("deploy")
    assert result.returncode == 1, result.stdout + result.stderr
    status = stack.status()
    phases = {p["name"]: p["status"] for p in status["phases"]}
    assert phases["health-wait"] == "failed"
    assert phases["verify"] == "pending"
    assert [p["name"] for p in status["phases"]][-2:] == ["cleanup", "verify"]
    assert "verify" in stack.run("status").stdout


# -- item 18: the pull summary counts every pull that did not happen -----------------------
# `docker compose --progress plain pull` (compose 2.40) of 12 images from a registry that
# does not resolve: one pull fails, compose stops the other eleven.
CAPTURED_PULL = """\
 s3 Pulling
 s9 Pulling
 s2 Pulling
 s1 Pulling
 s12 Pulling
 s10 Pulling
 s5 Pulling
 s11 Pulling
 s4 Pulling
 s7 Pulling
 s6 Pulling
 s8 Pulling
 s3 Error Get "https://registry.invalid/v2/": dial tcp: lookup registry.invalid on 10.255.255.53:53: no such host
 s10  Interrupted
 s8  Interrupted
 s4  Interrupted
 s9  Interrupted
 s2  Interrupted
 s11  Interrupted
 s1  Interrupted
 s12  Interrupted
 s5  Interrupted
 s6  Interrupted
 s7  Interrupted
Error response from daemon: Get "https://registry.invalid/v2/": dial tcp: lookup registry.invalid on 10.255.255.53:53: no such host
"""


def test_the_pull_summary_counts_interrupted_pulls_as_failed() -> None:
    from surefoot.deploy.phases.images import failed_pull

    failed = {service for line in CAPTURED_PULL.splitlines() if (service := failed_pull(line))}
    assert failed == {f"s{i}" for i in range(1, 13)}
    assert failed_pull(" db Pulled") is None
    assert failed_pull(" db Pulling ") is None


def test_the_pull_phase_names_all_twelve_failed_pulls(tmp_path: Path) -> None:
    """The phase itself, on a FakeEngine answering with the captured output."""
    from fakes import FakeEngine, Script, phase_context
    from surefoot.deploy.phases.images import pull

    services = {f"s{i}": {"image": f"registry.invalid/sft-nope/img{i}:1"} for i in range(1, 13)}
    docker = FakeEngine(Script(services=services, lines={"pull": CAPTURED_PULL.splitlines()}, codes={"pull": 1}))
    ctx, seen = phase_context(tmp_path, docker)
    pull(ctx)
    assert len(seen.warnings) == 1
    assert seen.warnings[0].startswith("could not pull " + ", ".join(sorted(services)) + ";"), seen.warnings


# -- item 11: cleanup removes only the project's dangling images ---------------------------
def test_cleanup_prunes_only_images_labelled_with_the_project(tmp_path: Path) -> None:
    from fakes import FakeEngine, phase_context
    from surefoot.deploy.phases.cleanup import prune
    from surefoot.engines.compose.argv import ComposeProject, prune_project_images_argv

    docker = FakeEngine(project_name="shop")
    ctx, _ = phase_context(tmp_path, docker)
    prune(ctx)
    assert docker.args("prune_project_images") == [{"project": "shop"}]
    argv = prune_project_images_argv(ComposeProject("shop", tmp_path, ()))
    assert argv[1:3] == ["image", "prune"]
    assert "label=com.docker.compose.project=shop" in argv, argv


def _dangling_image(folder: Path, label: str) -> str:
    """An untagged (dangling) image carrying ``label``; its id."""
    folder.mkdir()
    (folder / "Dockerfile").write_text(f"FROM scratch\nLABEL {label}\n")
    built = subprocess.run(["docker", "build", "-q", str(folder)], capture_output=True, text=True, check=True)
    return built.stdout.strip()


def _exists(image: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0


@pytest.mark.docker
def test_a_deploy_removes_the_projects_dangling_images_and_no_one_elses(stack: Project, tmp_path: Path) -> None:
    theirs = _dangling_image(tmp_path / "theirs", f"com.docker.compose.project=not-{stack.name}")
    ours = _dangling_image(tmp_path / "ours", f"com.docker.compose.project={stack.name}")
    # On this shared engine, other tests' engine-wide prunes would take both images at any time:
    # a stopped container keeps each one until a hook frees them just before cleanup.
    keepers = [subprocess.run(["docker", "create", image, "none"], capture_output=True, text=True,
                              check=True).stdout.strip() for image in (theirs, ours)]
    try:
        stack.write("surefoot.toml", stack.path.joinpath("surefoot.toml").read_text()
                    + f'\n[hooks.cleanup]\nbefore = [["docker", "rm", "--force", "{keepers[0]}", "{keepers[1]}"]]\n')
        result = stack.run("deploy")
        assert result.returncode == 0, result.stdout + result.stderr
        # What this deploy's prune deleted, as it reported it (`deleted: sha256:...`).
        assert f"deleted: {theirs}" not in result.stdout, "cleanup removed a dangling image not the project's"
        assert f"deleted: {ours}" in result.stdout, result.stdout
        assert not _exists(ours), "cleanup left the project's dangling image"
    finally:
        subprocess.run(["docker", "rm", "--force", *keepers], capture_output=True)
        subprocess.run(["docker", "image", "rm", "-f", theirs, ours], capture_output=True)


# -- item 17: the migration's entrypoint ---------------------------------------------------
TOOL_SERVICE = """
  tool:
    build: ./tool
    command: ["-c", "exec sleep 3600"]
    stop_signal: SIGKILL
"""
TOOL_DOCKERFILE = 'FROM {image}\nENTRYPOINT ["sh"]\n'  # as an image with ENTRYPOINT ["python3"]


@pytest.mark.docker
def test_the_migration_entrypoint_replaces_the_images(projects: Projects) -> None:
    project = projects.new({"compose.yaml": STACK_COMPOSE + TOOL_SERVICE, ".env": "GREETING=hello\n",
                            "tool/Dockerfile": TOOL_DOCKERFILE})
    config = STACK_CONFIG.format(name=project.name, port=project.port,
                                 command=migrate_command("echo migrated")).replace('service = "db"\ncommand',
                                                                                   'service = "tool"\ncommand')
    assert 'service = "tool"' in config
    # The command is appended to the image's entrypoint: `sh sh -c ...` fails.
    project.write("surefoot.toml", config)
    failed = project.run("deploy")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "phase database-migrate failed" in failed.stderr
    # entrypoint = []: the command runs alone.
    project.write("surefoot.toml", config.replace('timeout = "2m"', 'timeout = "2m"\nentrypoint = []', 1))
    resumed = project.run("deploy")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "database-migrate | migrated" in resumed.stdout
    # A multi-word entrypoint, quotes and all, reaches the container word for word.
    multi = config.replace(f"command = {migrate_command('echo migrated')}",
                           'command = [\'echo "migrated: $MODE $0"\', "zero"]\n'
                           'entrypoint = ["env", "MODE=it\'s $HOME \\"quoted\\"", "sh", "-c"]')
    assert "entrypoint" in multi
    project.write("surefoot.toml", multi)
    update = project.run("deploy")
    assert update.returncode == 0, update.stdout + update.stderr
    assert 'database-migrate | migrated: it\'s $HOME "quoted" zero' in update.stdout


def test_a_bad_migration_entrypoint_names_the_key(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: busybox\n")
    (tmp_path / "surefoot.toml").write_text(
        '[phases.database-migrate]\nservice = "web"\ncommand = ["true"]\nentrypoint = "sh -c"\n')
    result = surefoot("-C", str(tmp_path), "deploy")
    assert result.returncode == 2
    assert "phases.database-migrate.entrypoint" in result.stderr
    assert "Traceback" not in result.stderr


# -- item 16: preflight sees what builds need ----------------------------------------------
GOOD_DOCKERFILE = """\
ARG BASE={image}
ARG TAG=2
FROM ${{BASE}} AS base
RUN true
FROM registry.invalid/sft/unused:${{TAG}} AS unused
FROM scratch AS empty
FROM base
RUN true
"""
BUILT_SERVICE = """
  tool:
    build: ./tool
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
"""


@pytest.mark.docker
def test_preflight_fails_on_what_a_build_would_fetch_from_an_unreachable_registry(projects: Projects) -> None:
    project = projects.new({"compose.yaml": STACK_COMPOSE + BUILT_SERVICE, ".env": "GREETING=hello\n",
                            "tool/Dockerfile": GOOD_DOCKERFILE})
    project.configure(migrate_command("echo migrated"))
    dockerfile = project.path / "tool" / "Dockerfile"
    # Stages, scratch and an unused stage are not images to fetch: it deploys.
    result = project.run("deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "preflight | build: pass" in result.stdout

    # A # syntax= frontend that is not here, from a registry that does not answer.
    dockerfile.write_text("# syntax=registry.invalid/sft/dockerfile:1\n" + dockerfile.read_text())
    result = project.run("deploy")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "phase preflight failed" in result.stderr
    assert (f"registry.invalid/sft/dockerfile:1 (needed by {dockerfile} (# syntax= frontend)) "
            "is not on this machine and registry.invalid does not answer") in result.stderr
    assert project.phase("build")["status"] == "pending"

    # A FROM image that is not here.
    dockerfile.write_text(GOOD_DOCKERFILE.format(image=projects.image).replace(
        "FROM base\n", "FROM base\nFROM registry.invalid/sft/base:2\n"))
    result = project.run("deploy")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"registry.invalid/sft/base:2 (needed by {dockerfile}) is not on this machine" in result.stderr
    assert "unused" not in result.stderr

    # A secret's file that does not exist.
    dockerfile.write_text(GOOD_DOCKERFILE.format(image=projects.image))
    project.write("compose.yaml", STACK_COMPOSE.format(image=projects.image, port=project.port)
                  + BUILT_SERVICE + "    secrets: [token]\nsecrets:\n  token:\n    file: ./token.txt\n")
    result = project.run("deploy")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"secrets: secret token: {project.path / 'token.txt'} not found" in result.stderr
    project.write("token.txt", "t0ken\n")
    result = project.run("deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "preflight | secrets: pass (1 secret file(s) readable)" in result.stdout


def test_dockerfile_needs_read_as_buildkit_reads_them() -> None:
    from surefoot.config.dockerfile import needs, substitute

    text = (
        "# syntax=docker/dockerfile:1.4\n"
        "ARG BASE=debian:bookworm-slim\n"
        "ARG TAG\n"
        "FROM --platform=$BUILDPLATFORM ${BASE} AS Base\n"
        "RUN echo one \\\n"
        "  # a comment inside the instruction\n"
        "  && true\n"
        "FROM base AS build\n"
        "COPY --from=golang:1.22 /usr/local/go /go\n"
        "RUN <<EOF\n"
        "FROM not-an-instruction:1\n"
        "EOF\n"
        "FROM registry.invalid/x:${TAG} AS tagged\n"
        "FROM scratch\n"
        "COPY --from=build /x /x\n"
        "RUN --mount=type=cache,from=alpine:3,target=/c true\n"
    )
    found = needs(text)
    assert found.frontend == "docker/dockerfile:1.4"
    assert sorted(found.images) == ["alpine:3", "debian:bookworm-slim", "golang:1.22"]
    assert needs(text, target="tagged").images == []  # an ARG without a value: skipped
    assert needs(text, {"TAG": "7"}, target="tagged").images == ["registry.invalid/x:7"]
    assert needs(text, {"BASE": "ubuntu:24.04"}, target="base").images == ["ubuntu:24.04"]
    assert needs(text, {"BUILDKIT_SYNTAX": "me/front:1"}).frontend == "me/front:1"
    assert needs("# a comment first\n# syntax=x/y:1\nFROM scratch\n") == needs("FROM scratch\n")
    assert needs("FROM scratch\n").images == []
    assert substitute("a${X:-d}${Y:+z}$Z", {"Z": "q", "Y": ""}) == "adq"
    assert substitute("a:${MISSING}", {}) is None


def test_build_check_asks_the_registry_from_where_the_build_runs(tmp_path: Path) -> None:
    """A base image the builder lacks: its registry asked from the machine that builds (this one,
    or the server): a warning when it answers, a failure when it does not, naming the fix."""
    from types import SimpleNamespace

    from fake_host import FakeHost
    from surefoot.deploy.phases.build_checks import build_checks
    from surefoot.engines.compose.model import ComposeModel
    from surefoot.hosts.checks import CheckResult, http_get_argv

    (tmp_path / "Dockerfile").write_text("FROM here:1 AS one\nFROM example.org/away:2\nCOPY --from=one / /\n")
    model = ComposeModel("p", {"app": {"build": {"context": str(tmp_path), "dockerfile": "Dockerfile"}}},
                         digest="")

    def judged(site: str, answer: str) -> tuple[CheckResult, FakeHost, FakeHost]:
        engine = SimpleNamespace(image_ids=lambda images: {i: ("sha256:1" if i == "here:1" else None)
                                                           for i in images}, site=site)
        engine.build_engine = lambda: engine
        control, server = FakeHost(), FakeHost()
        for host in (control, server):
            host.answer(http_get_argv("https://example.org/v2/"), answer)
        ctx = SimpleNamespace(facts=SimpleNamespace(build_services=lambda: ["app"]), engine=engine,
                              control=control, host=server, state_dir=Path("/nonexistent/state"), prompter=None)
        results: list[CheckResult] = []
        build_checks(ctx, results.append, model)  # type: ignore[arg-type]
        assert len(results) == 1
        return results[0], control, server

    answered, control, server = judged("this machine", "401\n")
    assert answered.result == "warn"
    assert f"example.org/away:2 (needed by {tmp_path / 'Dockerfile'}) is not on this machine" in answered.measured
    assert control.ran and not server.ran  # asked from here: this machine builds
    silent, _, _ = judged("this machine", "error\nno such host\n")
    assert silent.result == "fail"
    assert "example.org does not answer it (no such host)" in silent.measured
    assert "here:1" not in silent.measured
    remote, control, server = judged("target web1", "error\nconnection timed out\n")
    assert remote.result == "fail" and server.ran and not control.ran  # asked from the server that builds
    assert "is not on target web1 and example.org does not answer there (connection timed out)" in remote.measured
    assert 'build = "control"' in remote.advice
