"""Settings from flags and the usual environment variables (flags win), validated at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.settings import (
    KubernetesSettings,
    SettingsError,
    TemporalSettings,
    WorkerSettings,
)
from workflows.model import DEFAULT_TASK_QUEUE


def test_temporal_defaults_without_environment() -> None:
    settings = TemporalSettings.from_env({})
    assert settings.address == "localhost:7233"
    assert settings.namespace == "default"
    assert settings.task_queue == DEFAULT_TASK_QUEUE
    assert not settings.tls_enabled
    assert settings.web_ui == "http://localhost:8233"


def test_temporal_from_environment() -> None:
    env = {
        "TEMPORAL_ADDRESS": "temporal.prod:7233",
        "TEMPORAL_NAMESPACE": "rollouts",
        "TEMPORAL_TASK_QUEUE": "canary",
        "TEMPORAL_TLS_CERT": "/certs/client.pem",
        "TEMPORAL_TLS_KEY": "/certs/client.key",
        "TEMPORAL_TLS_SERVER_CA_CERT": "/certs/ca.pem",
    }
    settings = TemporalSettings.from_env(env)
    assert settings.address == "temporal.prod:7233"
    assert settings.namespace == "rollouts"
    assert settings.task_queue == "canary"
    assert settings.tls_cert == Path("/certs/client.pem")
    assert settings.tls_key == Path("/certs/client.key")
    assert settings.tls_ca == Path("/certs/ca.pem")
    assert settings.tls_enabled
    assert settings.web_ui == "https://temporal.prod:8233"


def test_flags_win_over_environment() -> None:
    env = {"TEMPORAL_ADDRESS": "from-env:7233", "TEMPORAL_NAMESPACE": "env-ns"}
    settings = TemporalSettings.from_env(env, address="from-flag:7233", namespace=None)
    assert settings.address == "from-flag:7233"
    assert settings.namespace == "env-ns"


def test_tls_ca_prefers_temporal_tls_ca() -> None:
    env = {"TEMPORAL_TLS_CA": "/a.pem", "TEMPORAL_TLS_SERVER_CA_CERT": "/b.pem"}
    assert TemporalSettings.from_env(env).tls_ca == Path("/a.pem")


def test_api_key_turns_tls_on_and_stays_out_of_repr() -> None:
    settings = TemporalSettings.from_env({"TEMPORAL_API_KEY": "sekret-key-123"})
    assert settings.api_key == "sekret-key-123"
    assert settings.tls_enabled
    assert "sekret" not in repr(settings)


def test_api_key_from_a_mounted_secret_file(tmp_path: Path) -> None:
    key = tmp_path / "api-key"
    key.write_text("sekret-from-file\n")
    settings = TemporalSettings.from_env({"TEMPORAL_API_KEY_FILE": str(key)})
    assert settings.api_key == "sekret-from-file"
    assert settings.tls_enabled
    # The variable wins over the file; an optional Secret that is absent mounts no file: no key.
    both = {"TEMPORAL_API_KEY": "from-env", "TEMPORAL_API_KEY_FILE": str(key)}
    assert TemporalSettings.from_env(both).api_key == "from-env"
    absent = TemporalSettings.from_env({"TEMPORAL_API_KEY_FILE": str(tmp_path / "none")})
    assert absent.api_key is None
    assert not absent.tls_enabled


def test_certificate_without_key_is_refused() -> None:
    with pytest.raises(SettingsError, match="TEMPORAL_TLS_KEY"):
        TemporalSettings.from_env({"TEMPORAL_TLS_CERT": "/c.pem"})


def test_ui_url_and_workflow_link() -> None:
    settings = TemporalSettings.from_env({"TEMPORAL_UI_URL": "https://ui.example/"})
    url = settings.workflow_url("canary/default/test/podinfo")
    assert (
        url == "https://ui.example/namespaces/default/workflows/canary%2Fdefault%2Ftest%2Fpodinfo"
    )


def test_ui_derived_from_listen_address() -> None:
    assert TemporalSettings(address="0.0.0.0:7233").web_ui == "http://localhost:8233"
    assert TemporalSettings(address="10.1.2.3:17233").web_ui == "http://10.1.2.3:8233"


def test_kubernetes_settings() -> None:
    settings = KubernetesSettings.from_env(
        {"KUBECONFIG": "/k/one:/k/two", "COALMINE_CLUSTER": "eu"}
    )
    assert settings.kubeconfig == Path("/k/one")
    assert settings.cluster == "eu"
    assert not settings.in_cluster


def test_in_cluster_inside_a_pod_without_kubeconfig() -> None:
    pod = {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}
    assert KubernetesSettings.from_env(pod).in_cluster
    assert not KubernetesSettings.from_env(pod, kubeconfig=Path("/k")).in_cluster
    assert not KubernetesSettings.from_env(pod, in_cluster=False).in_cluster


def test_worker_settings_from_environment_and_flags() -> None:
    env = {"PROMETHEUS_URL": "http://prom:9090", "COALMINE_METRICS_PORT": "9100"}
    settings = WorkerSettings.from_env(
        env, max_cached_workflows=5000, max_concurrent_activities=200
    )
    assert settings.prometheus_url == "http://prom:9090"
    assert settings.metrics_port == 9100
    assert settings.max_cached_workflows == 5000
    assert settings.max_concurrent_activities == 200
    assert settings.activity_threads >= 300  # a thread for every activity slot, local ones too


def test_worker_defaults_size_for_many_rollouts() -> None:
    settings = WorkerSettings.from_env({})
    assert settings.max_cached_workflows >= 2000
    slots = settings.max_concurrent_activities + settings.max_concurrent_local_activities
    assert settings.activity_threads >= slots


@pytest.mark.parametrize(
    ("env", "flags", "message"),
    [
        ({"COALMINE_METRICS_PORT": "nine"}, {}, "whole number"),
        ({}, {"metrics_port": 70000}, "not a port"),
        ({}, {"max_cached_workflows": 0}, "at least 1"),
        ({}, {"max_concurrent_activities": 50, "activity_threads": 10}, "activity threads"),
        ({}, {"max_concurrent_local_activities": 150, "activity_threads": 200}, "plus local"),
    ],
)
def test_bad_worker_settings(env: dict[str, str], flags: dict[str, int], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        WorkerSettings.from_env(env, **flags)


def test_unset_flags_leave_the_environment_alone() -> None:
    env = {"PROMETHEUS_URL": "http://prom:9090"}
    assert WorkerSettings.from_env(env, prometheus_url=None).prometheus_url == "http://prom:9090"


def test_tls_config_reads_the_files(tmp_path: Path) -> None:
    from worker.temporal import tls_config

    for name in ("c.pem", "k.pem", "ca.pem"):
        (tmp_path / name).write_bytes(name.encode())
    settings = TemporalSettings(
        tls_cert=tmp_path / "c.pem",
        tls_key=tmp_path / "k.pem",
        tls_ca=tmp_path / "ca.pem",
        tls_server_name="temporal.internal",
    )
    tls = tls_config(settings)
    assert not isinstance(tls, bool)
    assert tls.client_cert == b"c.pem"
    assert tls.client_private_key == b"k.pem"
    assert tls.server_root_ca_cert == b"ca.pem"
    assert tls.domain == "temporal.internal"
    assert tls_config(TemporalSettings()) is False


def test_unreadable_certificate_is_bad_input(tmp_path: Path) -> None:
    from worker.errors import BadInputError
    from worker.temporal import tls_config

    with pytest.raises(BadInputError, match=r"missing\.pem"):
        tls_config(TemporalSettings(tls_ca=tmp_path / "missing.pem"))
