"""``coalmine temporal …``: prepare a Temporal namespace for rollouts.

``setup`` registers the custom search attributes the rollout upserts. It must run before the
first rollout on a server: a workflow that upserts an unknown attribute fails its workflow task
over and over and sits in Running. Registering is idempotent, so CI can run it every time.
"""

from __future__ import annotations

import typer

from worker import cli_common as common
from worker.search_attributes import register_search_attributes
from worker.temporal import connect

app = typer.Typer(help="Prepare a Temporal namespace for rollouts.", no_args_is_help=True)


@app.command()
def setup(
    *,
    address: common.AddressOpt = None,
    temporal_namespace: common.TemporalNamespaceOpt = None,
    api_key: common.ApiKeyOpt = None,
    tls_cert: common.TlsCertOpt = None,
    tls_key: common.TlsKeyOpt = None,
    tls_ca: common.TlsCaOpt = None,
    tls_server_name: common.TlsServerNameOpt = None,
) -> None:
    """Register the rollout search attributes (CanaryTarget, CanaryPhase, …); idempotent."""
    settings = common.temporal_settings(
        address=address,
        namespace=temporal_namespace,
        api_key=api_key,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_ca=tls_ca,
        tls_server_name=tls_server_name,
    )

    async def body() -> int:
        client = await connect(settings)
        added, present = await register_search_attributes(client)
        out = common.stdout()
        for name in added:
            out.print(f"added search attribute {name}", markup=False)
        for name in present:
            out.print(f"search attribute {name} already present", markup=False)
        out.print(f"namespace {settings.namespace} is ready for rollouts", markup=False)
        return 0

    common.run(body())
