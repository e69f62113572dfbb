"""A flagger-loadtester work-alike, served by pods whose image names ``flagger-loadtester``.

The webhook API follows fluxcd/flagger's ``pkg/loadtester``:

- ``POST /`` with ``{name, namespace, phase, metadata: {type, cmd, logCmdOutput,
  returnCmdOutput}}``: ``type: cmd`` (the default) starts ``sh -c cmd`` in the background and
  answers 202 at once; the same command for the same canary is not started again while it runs.
  ``type: bash`` runs ``bash -c cmd`` to the end and answers 200 (with the output when
  ``returnCmdOutput`` is true) or 500. No metadata → 400; an unknown type → 400.
- ``/gate/approve`` 200, ``/gate/halt`` 403; ``/gate/check`` 200 while the gate of
  ``name.namespace`` is open, else 403; ``/gate/open`` and ``/gate/close`` 202.
  ``/rollback/check|open|close`` the same for the rollback gate (open means "roll back").
- ``/healthz`` 200.

Commands run on the host, so their traffic must reach cluster names through the mesh: ``HTTP_PROXY``
is set for them and ``hey`` (which ignores ``HTTP_PROXY``) is wrapped to add ``-x`` with the mesh
address. The proxy URL carries the load tester's identity as user info
(``http://<workload>:<namespace>@127.0.0.1:<port>``), so the mesh labels that traffic
``source_workload=<loadtester deployment>`` as Istio would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

from sandbox.workloads.base import Obj, WorkloadRequest, WorkloadResponse, workload_of

log = logging.getLogger(__name__)

IMAGE_MARKER = "flagger-loadtester"


def is_loadtester_image(image: str) -> bool:
    return IMAGE_MARKER in image


def _text(status: int, text: str = "") -> WorkloadResponse:
    return WorkloadResponse(
        status=status, body=text.encode(), content_type="text/plain; charset=utf-8"
    )


def _truthy(value: object) -> bool:
    return str(value).lower() in ("1", "t", "true")


class LoadTester:
    """Gates and background commands, shared by every load tester pod of the sandbox."""

    def __init__(
        self, *, mesh_port: int, hey_bin: str | None, work_dir: Path, timeout: float = 3600
    ) -> None:
        self._mesh_port = mesh_port
        self._hey_bin = hey_bin
        self._bin_dir = work_dir / "loadtester-bin"
        self._timeout = timeout
        self._gates: set[str] = set()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._procs: set[asyncio.subprocess.Process] = set()
        self.total_execs = 0
        self._write_hey_wrapper()

    def _write_hey_wrapper(self) -> None:
        if not self._hey_bin:
            return
        self._bin_dir.mkdir(parents=True, exist_ok=True)
        wrapper = self._bin_dir / "hey"
        # hey builds its own transport and ignores HTTP_PROXY: give it the mesh with -x unless told.
        wrapper.write_text(
            "#!/bin/sh\n"
            'for a in "$@"; do [ "$a" = "-x" ] && exec "$SANDBOX_HEY_BIN" "$@"; done\n'
            'exec "$SANDBOX_HEY_BIN" -x "$SANDBOX_MESH_PROXY" "$@"\n'
        )
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

    def _env(self, pod: Obj) -> dict[str, str]:
        namespace = str((pod.get("metadata") or {}).get("namespace", "default"))
        proxy = f"http://{workload_of(pod)}:{namespace}@127.0.0.1:{self._mesh_port}"
        env = dict(os.environ)
        env.update(
            {
                "HTTP_PROXY": proxy,
                "http_proxy": proxy,
                "NO_PROXY": "127.0.0.1,localhost,::1",
                "no_proxy": "127.0.0.1,localhost,::1",
                "SANDBOX_MESH_PROXY": proxy,
                "SANDBOX_HEY_BIN": self._hey_bin or "hey",
                "PATH": f"{self._bin_dir}{os.pathsep}{env.get('PATH', '')}",
            }
        )
        return env

    async def __call__(  # noqa: PLR0911 - one return per endpoint, like the Go mux
        self, pod: Obj, container: Obj, request: WorkloadRequest
    ) -> WorkloadResponse:
        del container
        path = request.path.rstrip("/") or "/"
        if path == "/healthz":
            return _text(200, "OK")
        if path == "/gate/approve":
            return _text(200, "OK")
        if path == "/gate/halt":
            return _text(403, "Forbidden")
        try:
            payload: dict[str, Any] = json.loads(request.body or b"{}")
            if not isinstance(payload, dict):
                raise ValueError("payload is not an object")
        except ValueError:
            return _text(400, "decoding the request body failed")
        canary = f"{payload.get('name', '')}.{payload.get('namespace', '')}"
        for prefix, key in (("/gate", canary), ("/rollback", f"rollback.{canary}")):
            if path.startswith(prefix + "/"):
                return self._gate(path[len(prefix) + 1 :], key)
        if path == "/":
            return await self._webhook(pod, canary, payload)
        return _text(404, "404 page not found")

    def _gate(self, action: str, key: str) -> WorkloadResponse:
        if action == "check":
            return _text(200, "Approved") if key in self._gates else _text(403, "Forbidden")
        if action == "open":
            self._gates.add(key)
            log.info("%s gate opened", key)
            return _text(202)
        if action == "close":
            self._gates.discard(key)
            log.info("%s gate closed", key)
            return _text(202)
        return _text(404, "404 page not found")

    async def _webhook(self, pod: Obj, canary: str, payload: dict[str, Any]) -> WorkloadResponse:
        metadata = payload.get("metadata") or {}
        if not isinstance(metadata, dict) or not metadata:
            return _text(400, "metadata not found in payload")
        kind = str(metadata.get("type") or "cmd")
        cmd = metadata.get("cmd")
        if kind not in ("cmd", "bash"):
            return _text(400, f"unknown task type {kind}")
        if not cmd:
            return _text(400, "cmd not found in metadata")
        if kind == "bash":
            ok, out = await self._run(pod, canary, ["bash", "-c", str(cmd)], log_output=True)
            if not ok:
                return _text(500, out.decode(errors="replace"))
            return _text(
                200,
                out.decode(errors="replace") if _truthy(metadata.get("returnCmdOutput")) else "",
            )
        key = f"{canary}/{cmd}"
        if key in self._running:
            log.info("%s command skipped %s is already running", canary, cmd)
        else:
            log_output = _truthy(metadata.get("logCmdOutput"))
            task = asyncio.create_task(self._background(pod, canary, str(cmd), key, log_output))
            self._running[key] = task
        return _text(202)

    async def _background(
        self, pod: Obj, canary: str, cmd: str, key: str, log_output: bool
    ) -> None:
        try:
            await self._run(pod, canary, ["sh", "-c", cmd], log_output=log_output)
        finally:
            self._running.pop(key, None)

    async def _run(
        self, pod: Obj, canary: str, argv: list[str], *, log_output: bool
    ) -> tuple[bool, bytes]:
        self.total_execs += 1
        log.info("%s command starting %s", canary, argv[-1])
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
            env=self._env(pod),
        )
        self._procs.add(proc)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), self._timeout)
        except TimeoutError:
            proc.kill()
            out = b"timeout"
            await proc.wait()
        except asyncio.CancelledError:
            # The sandbox is stopping: end the command and let its pipes close while the loop runs.
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        finally:
            self._procs.discard(proc)
        ok = proc.returncode == 0
        if not ok:
            log.error(
                "%s command failed %s %s", canary, argv[-1], out.decode(errors="replace")[-2000:]
            )
        else:
            if log_output:
                log.info("%s %s", canary, out.decode(errors="replace")[-4000:])
            log.info("%s command finished %s", canary, argv[-1])
        return ok, out

    async def close(self) -> None:
        """Stop every running command (the sandbox is shutting down)."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for proc in list(self._procs):  # blocking bash commands of requests still open
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
