from temporalio.testing import WorkflowEnvironment


async def test_dev_server_has_canary_search_attributes(dev_server_env: WorkflowEnvironment) -> None:
    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest

    resp = await dev_server_env.client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=dev_server_env.client.namespace)
    )
    assert {"CanaryTarget", "CanaryPhase", "CanaryWeight"} <= set(resp.custom_attributes)
