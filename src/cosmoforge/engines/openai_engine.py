"""Generation through an OpenAI-compatible chat endpoint (vLLM serve, SGLang, TGI, hosted APIs).

Same interface as the offline engine (`run(requests)` yields each completion as it finishes),
so shard checkpointing, provenance, dedup and the card stay as they are; only
`engine.backend: openai` and the `engine.openai` section change.

- Up to `max_in_flight` requests at once (asyncio + httpx); results are yielded as they arrive.
- Retries with exponential backoff and jitter on 429, 5xx, timeouts and dropped connections,
  honouring `Retry-After`; a request that still fails becomes a row with `error` set (left out
  of the release and counted), never an empty text.
- The API key is read from the environment variable named by `api_key_env` and only ever put
  in the Authorization header: never in config, logs, stats or outputs.
- Sampling parameters the server does not support (`supports`) are refused at start unless
  they are at their neutral value, never silently dropped.
- The server applies the chat template; provenance records the server's reported model and
  version.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Iterable, Iterator

from cosmoforge.core.errors import CosmoforgeError
from cosmoforge.engines.requests import Completion, Request

log = logging.getLogger(__name__)

# Sampling parameters beyond the OpenAI API's own, and the value at which each has no effect.
EXTENSIONS = {"top_k": -1, "repetition_penalty": 1.0}
RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class OpenAIEngine:
    name = "openai"

    def __init__(self, model: dict, engine: dict, sampling: dict):
        self.cfg = engine["openai"]
        self.sampling = sampling
        self.chat_template_kwargs = dict(engine.get("chat_template_kwargs") or {})
        self.base_url = self.cfg["base_url"].rstrip("/")
        self.model = self.cfg["model"] or model["name"]
        unsupported = [
            key
            for key, neutral in EXTENSIONS.items()
            if key not in self.cfg["supports"] and sampling.get(key) not in (None, neutral)
        ]
        if unsupported:
            raise CosmoforgeError(
                f"sampling.{unsupported[0]}: the server at {self.base_url} does not support it "
                f"(engine.openai.supports lists {self.cfg['supports']}); set it to "
                f"{EXTENSIONS[unsupported[0]]} or use a server that does"
            )
        self.headers = {"Content-Type": "application/json"}
        self._key = None
        key_env = self.cfg["api_key_env"]
        if key_env:
            self._key = os.environ.get(key_env)
            if not self._key:
                raise CosmoforgeError(
                    f"engine.openai.api_key_env: the environment variable {key_env} is not set"
                )
            self.headers["Authorization"] = f"Bearer {self._key}"
        self.version = self._wait_until_ready()

    # --- start-up -------------------------------------------------------------------------

    def _wait_until_ready(self) -> str:
        """Poll the server until it answers (a server job may still be loading its model); its
        version for the provenance."""
        import httpx

        deadline = time.monotonic() + self.cfg["ready_timeout_s"]
        log.info(
            "waiting up to %s s for the server at %s to answer (engine.openai.ready_timeout_s)",
            self.cfg["ready_timeout_s"],
            self.base_url,
        )
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                response = httpx.get(f"{self.base_url}/models", headers=self.headers, timeout=10)
                if response.status_code == 200:
                    served = [m.get("id") for m in response.json().get("data", [])]
                    if served and self.model not in served:
                        raise CosmoforgeError(
                            f"engine.openai.model: {self.base_url} serves {served}, not "
                            f"{self.model!r}"
                        )
                    return self._server_version(httpx)
                if response.status_code in (401, 403):
                    raise CosmoforgeError(
                        f"{self.base_url}: the server refused the API key "
                        f"(HTTP {response.status_code}; engine.openai.api_key_env)"
                    )
                last = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(1)
        raise CosmoforgeError(
            f"{self.base_url}: the server did not come up within "
            f"{self.cfg['ready_timeout_s']} s (last: {last}); check its job and "
            "engine.openai.base_url"
        )

    def _server_version(self, httpx) -> str:
        try:  # vLLM and SGLang report a version; others may not
            response = httpx.get(f"{self.base_url.removesuffix('/v1')}/version", timeout=5)
            if response.status_code == 200:
                return str(response.json().get("version", "unknown"))
        except (httpx.HTTPError, ValueError):
            pass
        return "unknown"

    # --- generation -----------------------------------------------------------------------

    def body(self, request: Request) -> dict:
        s = self.sampling
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": request.prompt}],
            "max_tokens": s["max_tokens"],
            "temperature": s["temperature"],
            "top_p": s["top_p"],
        }
        if request.seed is not None:
            body["seed"] = request.seed
        if self.chat_template_kwargs:  # vLLM's and SGLang's servers read this field
            body["chat_template_kwargs"] = self.chat_template_kwargs
        for key, neutral in EXTENSIONS.items():
            if key in self.cfg["supports"] and s.get(key) not in (None, neutral):
                body[key] = s[key]
        if request.regex is not None:
            if not self.cfg["regex_field"]:
                raise CosmoforgeError(
                    "engine.openai.regex_field: this request needs a structured-output regex "
                    "(topic labelling); set the server's field name, e.g. structured_outputs"
                )
            field = self.cfg["regex_field"]
            body[field] = (
                {"regex": request.regex} if field == "structured_outputs" else request.regex
            )
        return body

    def run(self, requests: Iterable[Request]) -> Iterator[Completion]:
        """Completions in the order they finish. The requests run on an event loop in a
        background thread; this generator hands their results over as they arrive."""
        requests = list(requests)
        results: queue.Queue = queue.Queue()
        stop = threading.Event()
        thread = threading.Thread(
            target=lambda: asyncio.run(self._run_all(requests, results, stop)), daemon=True
        )
        thread.start()
        try:
            for _ in range(len(requests)):
                item = results.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()  # a stopped consumer (signal, crash) stops admitting new requests
            thread.join(timeout=5)

    async def _run_all(self, requests: list[Request], results: queue.Queue, stop) -> None:
        import httpx

        limit = asyncio.Semaphore(self.cfg["max_in_flight"])
        timeout = httpx.Timeout(self.cfg["request_timeout_s"], connect=10)
        limits = httpx.Limits(max_connections=self.cfg["max_in_flight"])
        async with httpx.AsyncClient(
            timeout=timeout, limits=limits, headers=self.headers
        ) as client:

            async def one(request: Request) -> None:
                async with limit:
                    if stop.is_set():
                        return
                    try:
                        results.put(await self._complete(client, request))
                    except BaseException as exc:  # hand anything unexpected to the consumer
                        stop.set()  # and send nothing more (a refused key refuses them all)
                        results.put(exc)

            await asyncio.gather(*(one(r) for r in requests))

    async def _complete(self, client, request: Request) -> Completion:
        import httpx

        attempts = self.cfg["max_retries"] + 1
        problem = ""
        for attempt in range(attempts):
            retry_after = None
            try:
                response = await client.post(
                    f"{self.base_url}/chat/completions", json=self.body(request)
                )
                if response.status_code == 200:
                    try:
                        data = response.json()
                    except ValueError:  # not JSON at all: the same as a malformed answer
                        data = None
                    return self._completion(request, data)
                if response.status_code in (401, 403):
                    # Every other request would be refused the same way: stop the job now.
                    raise CosmoforgeError(
                        f"{self.base_url}: the server refused a request (HTTP "
                        f"{response.status_code}); check the key named by "
                        "engine.openai.api_key_env and the server's access rules"
                    )
                problem = f"HTTP {response.status_code}: {self._scrub(response.text)[:200]}"
                if response.status_code not in RETRY_STATUS:
                    break
                retry_after = _retry_after(response.headers.get("retry-after"))
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                problem = f"{type(exc).__name__}: {self._scrub(str(exc))}"[:200]
            if attempt + 1 < attempts:
                await asyncio.sleep(self._backoff(attempt, retry_after))
        log.warning(
            "%s: giving up after %d attempt(s): %s", request.sample_id, attempt + 1, problem
        )
        return Completion(request.sample_id, "", "error", 0, 0, error=f"openai: {problem}")

    def _scrub(self, text: str) -> str:
        """`text` without the API key: an error body (a proxy's, say) may echo the request's
        headers, and error texts go to the log and into the shard's rows."""
        return text.replace(self._key, "[API key]") if self._key else text

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.cfg["max_backoff_s"])
        base = self.cfg["backoff_s"] * 2**attempt
        return min(base * (0.5 + random.random()), self.cfg["max_backoff_s"])  # full jitter

    def _completion(self, request: Request, data: dict) -> Completion:
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
            usage = data.get("usage") or {}
            self.served_model = data.get("model", self.model)
            return Completion(
                request.sample_id,
                text,
                str(choice.get("finish_reason") or "stop"),
                int(usage.get("prompt_tokens", 0)),
                int(usage.get("completion_tokens", 0)),
                error=None if text.strip() else "openai: empty completion",
            )
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            problem = "not JSON" if data is None else f"{type(exc).__name__}: {exc}"
            return Completion(
                request.sample_id,
                "",
                "error",
                0,
                0,
                error=f"openai: malformed response ({problem})",
            )


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: back off as usual
