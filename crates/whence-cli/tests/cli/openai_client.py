"""A third-party client against `whence serve`: the `openai` Python package.

Run by the Rust test `serve_sampling::the_openai_python_client_works_against_whence_serve`:

    python openai_client.py BASE_URL API_KEY MODEL

Checks that the completions answers parse into the client's types and are
well formed (types, lengths, finish reasons), for the requests that
scoring, evaluation and sampling clients send. Prints one line per check
and `ok: N checks` at the end; any failure raises (exit status 1).
"""

import math
import sys

import openai

base_url, api_key, model = sys.argv[1:4]
client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=120)
checks = 0


def check(condition, what):
    global checks
    if not condition:
        raise AssertionError(what)
    checks += 1


def is_logprob(x):
    return isinstance(x, float) and math.isfinite(x) and x <= 0.0


# /v1/models names the served model.
models = client.models.list()
check([m.id for m in models.data] == [model], f"models: {models}")
print("models.list:", models.data[0].id)

# Scoring as vLLM's clients do it: prompt_logprobs through extra_body.
prompt = "The quick brown fox jumps over the lazy dog"
scored = client.completions.create(
    model=model, prompt=prompt, max_tokens=1, temperature=0, extra_body={"prompt_logprobs": 1}
)
choice = scored.choices[0]
extra = choice.model_extra or {}
prompt_ids = extra.get("prompt_token_ids")
entries = extra.get("prompt_logprobs")
check(isinstance(prompt_ids, list) and len(prompt_ids) > 1, f"prompt_token_ids: {prompt_ids}")
check(isinstance(entries, list) and len(entries) == len(prompt_ids), f"prompt_logprobs: {entries}")
check(entries[0] is None, "the first prompt_logprobs entry is null")
for position, (entry, token) in enumerate(zip(entries[1:], prompt_ids[1:]), start=1):
    check(str(token) in entry, f"prompt_logprobs[{position}] has the prompt token {token}")
    item = entry[str(token)]
    check(is_logprob(item["logprob"]) and isinstance(item["rank"], int) and item["rank"] >= 1, f"{item}")
    check(isinstance(item["decoded_token"], str), f"{item}")
check(choice.finish_reason in ("stop", "length"), f"finish_reason {choice.finish_reason}")
check(scored.usage.prompt_tokens == len(prompt_ids), f"usage {scored.usage}")
check(scored.usage.completion_tokens == 1, f"usage {scored.usage}")
print("prompt_logprobs:", len(entries), "entries")

# lm-evaluation-harness' loglikelihood request: echo with logprobs, no tokens.
echoed = client.completions.create(model=model, prompt=prompt, max_tokens=0, echo=True, logprobs=3, temperature=0)
choice = echoed.choices[0]
check(choice.text == prompt, f"echo text {choice.text!r}")
lp = choice.logprobs
check(lp is not None, "logprobs present")
n = len(lp.token_logprobs)
check(n == len(lp.tokens) == len(lp.top_logprobs) == len(lp.text_offset) == len(prompt_ids), f"logprobs lengths: {lp}")
check(lp.token_logprobs[0] is None and lp.top_logprobs[0] is None, "the first prompt token has no log-probability")
check(all(is_logprob(x) for x in lp.token_logprobs[1:]), f"token_logprobs {lp.token_logprobs}")
check(all(isinstance(t, str) for t in lp.tokens), f"tokens {lp.tokens}")
check(all(isinstance(o, int) for o in lp.text_offset) and lp.text_offset == sorted(lp.text_offset), f"text_offset {lp.text_offset}")
for position in range(1, n):
    top = lp.top_logprobs[position]
    check(isinstance(top, dict) and 1 <= len(top) <= 4, f"top_logprobs[{position}] {top}")
    check(all(is_logprob(v) for v in top.values()), f"top_logprobs[{position}] {top}")
    check(lp.tokens[position] in top, f"top_logprobs[{position}] has its own token")
    # lm-eval's greediness test compares the token's value with the top's maximum.
    check(lp.token_logprobs[position] <= max(top.values()) + 1e-9, f"position {position}")
# The same numbers as prompt_logprobs.
for position in range(1, n):
    check(abs(lp.token_logprobs[position] - entries[position][str(prompt_ids[position])]["logprob"]) < 1e-6, f"position {position}")
check(echoed.usage.completion_tokens == 0, f"usage {echoed.usage}")
print("echo + logprobs:", n, "tokens")

# Sampling: n choices with a seed, reproducible.
def sample(seed):
    return client.completions.create(
        model=model,
        prompt="Once upon a time",
        max_tokens=8,
        n=2,
        seed=seed,
        temperature=1.0,
        top_p=0.9,
        logprobs=2,
        stop=["\n\n"],
        extra_body={"top_k": 50, "return_token_ids": True},
    )


sampled = sample(7)
check(len(sampled.choices) == 2, f"{len(sampled.choices)} choices")
check([c.index for c in sampled.choices] == [0, 1], "choice indices")
generated = 0
for c in sampled.choices:
    check(isinstance(c.text, str), f"text {c.text!r}")
    check(c.finish_reason in ("stop", "length"), f"finish_reason {c.finish_reason}")
    tokens = (c.model_extra or {}).get("token_ids")
    check(isinstance(tokens, list) and 1 <= len(tokens) <= 8, f"token_ids {tokens}")
    check(c.finish_reason == "stop" or len(tokens) == 8, f"a `length` choice has max_tokens tokens: {tokens}")
    check(len(c.logprobs.tokens) == len(c.logprobs.token_logprobs) == len(tokens), f"logprobs {c.logprobs}")
    check(all(is_logprob(x) for x in c.logprobs.token_logprobs), f"token_logprobs {c.logprobs.token_logprobs}")
    check(all(1 <= len(top) <= 3 for top in c.logprobs.top_logprobs), f"top_logprobs {c.logprobs.top_logprobs}")
    check("\n\n" not in c.text, "the stop string is cut")
    generated += len(tokens)
check(sampled.usage.completion_tokens == generated, f"usage {sampled.usage}")
again = sample(7)
check([c.text for c in again.choices] == [c.text for c in sampled.choices], "the same seed gives the same choices")
print("sampled n=2:", [c.text for c in sampled.choices], [c.finish_reason for c in sampled.choices])

# Greedy, several prompts in one request.
greedy = client.completions.create(model=model, prompt=["Hello", "Goodbye"], max_tokens=4, temperature=0)
check(len(greedy.choices) == 2 and [c.index for c in greedy.choices] == [0, 1], f"{greedy.choices}")
print("greedy, two prompts:", [c.text for c in greedy.choices])

# Bad requests are the client's BadRequestError, naming the field.
for kwargs, field in [
    ({"temperature": -1.0}, "temperature"),
    ({"top_p": 1.5}, "top_p"),
    ({"n": 0}, "`n`"),
    ({"logprobs": 21}, "logprobs"),
    ({"max_tokens": 100000}, "max_tokens"),
]:
    try:
        client.completions.create(model=model, prompt="Hi", **{"max_tokens": 2, **kwargs})
    except openai.BadRequestError as error:
        check(error.status_code == 400 and field in str(error), f"{kwargs}: {error}")
    else:
        raise AssertionError(f"{kwargs} was not refused")
print("bad requests: refused with 400")

# A wrong key is the client's AuthenticationError.
try:
    openai.OpenAI(base_url=base_url, api_key="wrong", max_retries=0).completions.create(model=model, prompt="Hi", max_tokens=1)
except openai.AuthenticationError:
    check(True, "")
else:
    raise AssertionError("a wrong API key was accepted")

print(f"ok: {checks} checks")
