"""Layer shipping as logic (engines/compose/layers.py): chain ids, what a daemon's answer says it
has, and the small archives that carry one layer each. On real servers: tests/test_layers.py."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from surefoot.engines.compose import layers

A, B, C = (f"sha256:{c * 64}" for c in "abc")


def test_chain_ids_are_the_daemon_s() -> None:
    chains = layers.chain_ids([A, B, C])
    assert chains[0] == A
    assert chains[1] == "sha256:" + hashlib.sha256(f"{A} {B}".encode()).hexdigest()
    assert chains[2] == "sha256:" + hashlib.sha256(f"{chains[1]} {C}".encode()).hexdigest()


def test_a_server_has_the_lowest_layers_of_a_stack_or_none() -> None:
    answer = json.dumps([A, B]) + "\n" + json.dumps([C]) + "\nnot json\n"
    present = layers.parse_chains(answer)
    assert layers.first_missing([A, B, C], present) == 2
    assert layers.first_missing([A, C], present) == 1  # C alone is another stack than A then C
    assert layers.first_missing([B], present) == 0
    assert layers.first_missing([], present) == 0
    assert layers.containerd_store('overlayfs [["driver-type","io.containerd.snapshotter.v1"]]')
    assert not layers.containerd_store('overlay2 [["Backing Filesystem","extfs"]]')


def _saved(tmp_path: Path) -> layers.SavedImage:
    """A docker-archive as docker save writes it: three layers, a configuration, a manifest."""
    files = {f"l{i}/layer.tar": bytes([65 + i]) * (1000 * (i + 1)) for i in range(3)}
    diff_ids = [f"sha256:{hashlib.sha256(data).hexdigest()}" for data in files.values()]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = json.dumps([{"Config": "cfg.json", "RepoTags": ["app:1"], "Layers": list(files)}]).encode()
    path = tmp_path / "app.tar"
    with tarfile.open(path, "w") as archive:
        for name, data in {**files, "cfg.json": config, "manifest.json": manifest}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return layers.read_saved("app:1", path)


def _written(saved: layers.SavedImage, count: int, send: int | None) -> dict[str, bytes]:
    out = io.BytesIO()
    counted: list[int] = []
    layers.write_archive(out, saved, count, send, counted.append)
    out.seek(0)
    with tarfile.open(fileobj=out) as archive:
        found = {m.name: archive.extractfile(m).read() for m in archive.getmembers()}  # type: ignore[union-attr]
    assert sum(counted) == (len(found.get(saved.layers[send], b"")) if send is not None else 0)
    return found


def test_each_archive_carries_one_layer_and_names_the_stack_below_it(tmp_path: Path) -> None:
    saved = _saved(tmp_path)
    assert saved.sizes == [1000, 2000, 3000] and len(saved.diff_ids) == 3
    middle = _written(saved, 2, 1)
    assert set(middle) == {"partial.json", "manifest.json", "l1/layer.tar"}
    manifest = json.loads(middle["manifest.json"])[0]
    assert manifest["Layers"] == ["l0/layer.tar", "l1/layer.tar"]
    assert manifest["RepoTags"] == [layers.partial_tag(saved, 2)]
    assert json.loads(middle["partial.json"])["rootfs"]["diff_ids"] == saved.diff_ids[:2]
    whole = _written(saved, 3, 2)  # the last layer's load is the image itself, its own configuration
    assert json.loads(whole["manifest.json"])[0]["RepoTags"] == ["app:1"] and whole["cfg.json"] == saved.config
    alone = _written(saved, 3, None)  # every layer there: the configuration and name alone
    assert set(alone) == {"cfg.json", "manifest.json"}


@pytest.mark.docker
def test_an_archive_without_the_layers_the_daemon_has_loads(docker: None, busybox_image: str, tmp_path: Path) -> None:
    """The daemon takes the layers it has from its store (the fact layer shipping rests on)."""
    name = "surefoot-test/layers-probe:1"
    (tmp_path / "Dockerfile").write_text(f"FROM {busybox_image}\nRUN echo {tmp_path.name} > /marker\n")
    subprocess.run(["docker", "build", "-q", "-t", name, str(tmp_path)], check=True, capture_output=True)
    try:
        subprocess.run(["docker", "save", "-o", str(tmp_path / "saved.tar"), name], check=True)
        saved = layers.read_saved(name, tmp_path / "saved.tar")
        subprocess.run(["docker", "image", "rm", name], check=True, capture_output=True)  # the base stays
        out = io.BytesIO()
        layers.write_archive(out, saved, len(saved.layers), len(saved.layers) - 1, lambda n: None)
        loaded = subprocess.run(["docker", "load"], input=out.getvalue(), capture_output=True)
        assert loaded.returncode == 0, loaded.stderr
        ran = subprocess.run(["docker", "run", "--rm", name, "cat", "/marker"], capture_output=True, text=True)
        assert ran.stdout.strip() == tmp_path.name
    finally:
        subprocess.run(["docker", "image", "rm", name], capture_output=True)


@pytest.mark.docker
def test_an_image_removed_between_listing_and_look_is_no_failure(docker: None, busybox_image: str,
                                                                  tmp_path: Path) -> None:
    """Two images shipped to one server at once: one drops its stepping stones while the other
    lists the server's layers (found by CI). The listing stands; a daemon that fails does not."""
    real = subprocess.run(["sh", "-c", "command -v docker"], capture_output=True, text=True).stdout.strip()
    gone = "sha256:" + "0" * 64
    shim = tmp_path / "docker"  # the listing names one image more, removed before it is looked at
    shim.write_text(f'#!/bin/sh\nif [ "$1 $2" = "image ls" ]; then "{real}" "$@"; echo {gone}; exit; fi\n'
                    f'exec "{real}" "$@"\n')
    shim.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    answer = subprocess.run(["sh", "-c", layers.REMOTE_CHAINS], capture_output=True, text=True, env=env)
    assert answer.returncode != 0 and "No such image" in answer.stderr
    assert layers.vanished_only(answer.stderr)
    base = subprocess.run(["docker", "image", "inspect", "--format", "{{json .RootFS.Layers}}", busybox_image],
                          capture_output=True, text=True, check=True).stdout
    assert layers.first_missing(json.loads(base), layers.parse_chains(answer.stdout)) == len(json.loads(base))
    assert not layers.vanished_only("Cannot connect to the Docker daemon at unix:///var/run/docker.sock.")
    assert not layers.vanished_only("Error: No such image: sha256:00\npermission denied\n")
    assert not layers.vanished_only("")


def test_an_image_arrives_under_the_name_that_asked_with_its_tag() -> None:
    from surefoot.engines.compose.delivery import tagged

    assert tagged("api") == "api:latest"
    assert tagged("registry:5000/team/api") == "registry:5000/team/api:latest"
    assert tagged("surefoot.local/shop/api:id-80c2d0c698bb") == "surefoot.local/shop/api:id-80c2d0c698bb"
