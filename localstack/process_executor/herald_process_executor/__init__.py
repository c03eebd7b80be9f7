"""Herald's LocalStack plugin: run Lambda functions as local processes instead of containers.

The plux plugin is kept here, free of heavy imports, because LocalStack resolves every plugin of
the ``localstack.lambda.runtime_executor`` namespace when it looks one up; the executor module is
only imported when ``LAMBDA_RUNTIME_EXECUTOR=process`` actually selects it.
"""

from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin


class ProcessRuntimeExecutorPlugin(RuntimeExecutorPlugin):
    """Entry point ``process`` in group ``localstack.lambda.runtime_executor``."""

    name = "process"

    def load(self, *args: object, **kwargs: object) -> type:
        from herald_process_executor.executor import ProcessRuntimeExecutor

        return ProcessRuntimeExecutor
