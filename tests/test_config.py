"""Configuration loading: defaults, and errors that name the file, the key and the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from surefoot.base.errors import ConfigError
from surefoot.config.project import default_project_name
from surefoot.config.settings import load_settings


def surefoot(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "surefoot", "-C", str(cwd), *args],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "My Shop"
    folder.mkdir()
    (folder / "compose.yaml").write_text("services:\n  web:\n    image: nginx\n")
    return folder


def test_defaults_come_from_the_folder(project: Path) -> None:
    (project / "compose.override.yaml").write_text("services: {}\n")
    settings = load_settings(project)
    assert settings.project_name == "myshop"
    assert [f.name for f in settings.compose_files] == ["compose.yaml", "compose.override.yaml"]
    assert settings.env_file is None
    assert settings.config_path is None
    assert settings.phases.health_wait.consecutive == 3
    assert settings.phases.health_wait.interval == 2.0


def test_values_are_parsed(project: Path) -> None:
    (project / "surefoot.toml").write_text(
        '[project]\nname = "shop"\nenv_file = ".env.production"\n'
        '[phases.health-wait]\nurl = "http://127.0.0.1:8080/health"\ninterval = "1m30s"\n'
        'consecutive = 5\n[phases.cleanup]\nenabled = false\n'
    )
    settings = load_settings(project)
    assert settings.project_name == "shop"
    assert settings.env_file == project.resolve() / ".env.production"
    assert settings.phases.health_wait.interval == 90.0
    assert settings.phases.health_wait.consecutive == 5
    assert settings.phases.for_phase("cleanup").enabled is False


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[project\nname = 1", "invalid TOML"),
        ('[project]\nname = "shop"\ncolour = "red"\n', "project.colour: unknown key"),
        ('[phases.health-wait]\nprobes = [{ type = "grpc", port = 9 }]\n',
         "phases.health-wait.probes.0: type: 'grpc' is not a kind of probe (http, tcp, command, container)"),
        ("[phases.health-wait]\nconsecutive = \"many\"\n", "phases.health-wait.consecutive: Input should be a valid integer"),
        ('[phases.health-wait]\ninterval = "soon"\n', "phases.health-wait.interval: 'soon' is not a duration"),
        ('[phases.health-wait]\nurl = "ftp://x"\n', "phases.health-wait.url: String should match pattern"),
        ('[project]\ncompose_files = ["missing.yaml"]\n', "project.compose_files[0]: file not found"),
        ('[project]\nname = "Bad Name"\n', "project.name: 'Bad Name' is not a valid compose project name"),
        ('[phases.database-migrate]\ncommand = ["migrate"]\n', "phases.database-migrate.service: required"),
        ("[phases.warp-drive]\n", "phases.warp-drive: unknown key"),
        ('[targets.web]\nhost = "deploy@web1"\nbuild = "control"\nship = "rsync"\n',
         "targets.web.ship: Input should be 'layers' or 'images'"),
    ],
)
def test_bad_configuration_is_a_one_line_reason_and_exit_2(project: Path, toml: str, expected: str) -> None:
    config = project / "surefoot.toml"
    config.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_settings(project)
    assert expected in str(caught.value)
    assert str(config) in str(caught.value)

    result = surefoot(project, "deploy")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert expected in lines[0]


def test_missing_compose_file_and_missing_config_given_with_c(tmp_path: Path) -> None:
    result = surefoot(tmp_path, "deploy")
    assert result.returncode == 2
    assert "no compose file found" in result.stderr
    result = surefoot(tmp_path, "-c", str(tmp_path / "nope.toml"), "deploy")
    assert result.returncode == 2
    assert "configuration file not found" in result.stderr


def test_usage_errors_exit_2(project: Path) -> None:
    assert surefoot(project, "launch").returncode == 2
    assert surefoot(project, "deploy", "--turbo").returncode == 2
    both = surefoot(project, "deploy", "--fresh", "--resume")
    assert both.returncode == 2
    assert "cannot be used together" in both.stderr


def test_folder_names_become_compose_project_names() -> None:
    assert default_project_name(Path("/srv/My_Shop-2")) == "my_shop-2"
    assert default_project_name(Path("/srv/--x")) == "x"


@pytest.mark.parametrize(("batch", "targets", "size"), [(1, 3, 1), (2, 3, 2), (5, 3, 3), ("50%", 3, 2),
                                                        ("34%", 3, 2), ("100%", 4, 4), ("1%", 3, 1)])
def test_rollout_batch_is_a_number_or_a_percentage_rounded_up(batch: object, targets: int, size: int) -> None:
    from surefoot.config.targets import RolloutSection

    assert RolloutSection(batch=batch).batch_size(targets) == size  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ['batch = "half"', 'batch = "0%"', "batch = 0", 'on_failure = "ignore"'])
def test_a_bad_rollout_setting_is_refused_naming_the_key(tmp_path: Path, text: str) -> None:
    from surefoot.base.errors import ConfigError
    from surefoot.config.settings import load_settings

    (tmp_path / "compose.yaml").write_text("services: {}\n")
    (tmp_path / "surefoot.toml").write_text(f"[rollout]\n{text}\n")
    with pytest.raises(ConfigError, match=r"surefoot.toml: rollout\."):
        load_settings(tmp_path)
