"""Run one GGUF file in llama.cpp and save its greedy tokens and prompt logits: the child process of
`hf_prune.export.gguf.llama_cpp_greedy`.

It is run as a script (`python llama_cpp_worker.py REQUEST_JSON`), never imported, and imports only numpy and
llama-cpp-python, so that a crash inside llama.cpp ends this process and not the caller.
"""

import json
import sys

import numpy as np


def main(request: dict) -> None:
    from llama_cpp import Llama

    input_ids, max_new_tokens = request["input_ids"], request["max_new_tokens"]
    runtime = Llama(
        model_path=request["model"], n_ctx=len(input_ids) + max_new_tokens + 8, logits_all=True, verbose=False, n_threads=2
    )
    try:
        runtime.eval(list(input_ids))
        prompt_logits = np.array(runtime.scores[: len(input_ids)], dtype=np.float32)
        generated = []
        # Decoding goes through llama.cpp's KV cache one token at a time, as a server would.
        for _ in range(max_new_tokens):
            token = int(np.argmax(runtime.scores[runtime.n_tokens - 1]))
            generated.append(token)
            runtime.eval([token])
        np.savez(request["output"], tokens=np.array(generated, dtype=np.int64), logits=prompt_logits)
    finally:
        runtime.close()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
