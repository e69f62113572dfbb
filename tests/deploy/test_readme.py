"""The commands and the overlay deploy/README.md shows work as written."""

from __future__ import annotations

import re
import shlex
import shutil

from tests.deploy._support import DEPLOY, MANIFESTS, container, env, helm_template, kustomize

README = (DEPLOY / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def test_the_example_overlay_renders_with_the_image_and_address(tmp_path):
    (overlay,) = [b for b in blocks("yaml") if "kind: Kustomization" in b]
    shutil.copytree(MANIFESTS, tmp_path / "deploy" / "manifests")
    mine = tmp_path / "my-coalmine"
    mine.mkdir()
    (mine / "kustomization.yaml").write_text(overlay)
    objects = kustomize(mine)
    assert container(objects)["image"] == "registry.example.com/coalmine:0.1.0"
    assert (
        env(objects)["TEMPORAL_ADDRESS"]["value"]
        == "temporal-frontend.temporal.svc.cluster.local:7233"
    )


def test_the_helm_install_line_renders():
    (line,) = [
        " ".join(shell.split("\\\n")) for shell in blocks("sh") if shell.startswith("helm install")
    ]
    argv = shlex.split(line)
    assert argv[:4] == ["helm", "install", "coalmine", "deploy/helm/coalmine"]
    values = [a for a in argv[4:] if a not in ("--create-namespace",)]
    namespace = values[values.index("-n") + 1]
    sets = [a for i, a in enumerate(values) if values[i - 1] == "--set"]
    flags = [x for s in sets for x in ("--set", s)]
    objects = helm_template(*flags, namespace=namespace)
    assert container(objects)["image"] == "registry.example.com/coalmine:0.1.0"


def test_the_kubectl_apply_paths_exist():
    for path in re.findall(r"kubectl apply -k ([\w/.-]+)", README):
        if path.startswith("deploy/"):
            assert (DEPLOY.parent / path / "kustomization.yaml").exists(), path
