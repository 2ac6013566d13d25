#!/usr/bin/env python3
"""Render the vendored Hugging Face chat templates with Python jinja2, configured the
way `transformers` configures it for `apply_chat_template`, and write the results to
`expected.json` (and `expected_errors.json`).

Usage (from anywhere):

    python3 -m venv /tmp/tplenv && /tmp/tplenv/bin/pip install 'jinja2==3.1.6'
    /tmp/tplenv/bin/python tests/templates/make_expected.py          # (re)write the JSON files
    /tmp/tplenv/bin/python tests/templates/make_expected.py --check  # verify, write nothing

Environment (mirrors transformers.utils.chat_template_utils._cached_compile_jinja_template):
  * jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
    extensions=[<generation tag>, jinja2.ext.loopcontrols]); everything else default
    (Undefined = jinja2.Undefined, i.e. lenient; keep_trailing_newline = False; autoescape off).
  * filter  tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
            = json.dumps(...) with those keyword arguments (NOT jinja's HTML-escaping tojson).
  * global  raise_exception(message) -> raises jinja2.exceptions.TemplateError(message).
  * global  strftime_now(fmt) -> FIXED_NOW.strftime(fmt). transformers uses datetime.now();
            we pin the clock so the expectations are deterministic. The Rust side must be
            given the same fixed date (2026-11-26 12:00:00) in tests.
  * render variables: messages, add_generation_prompt, bos_token, eos_token, tools, documents
    (tools/documents = None unless a case sets them), plus any extra kwargs of the case
    (enable_thinking, date_string, ...). Exactly the dict stored as "variables" in the JSON.
"""

import argparse
import datetime
import json
import pathlib
import sys

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = pathlib.Path(__file__).resolve().parent
EXPECTED = HERE / "expected.json"
EXPECTED_ERRORS = HERE / "expected_errors.json"

# Fixed "now" for strftime_now (26 Nov 2026). None of the four vendored templates calls
# strftime_now (Llama 3.1 hard-codes date_string = "26 Jul 2024"), but it is registered
# exactly like transformers does, so a template that uses it stays deterministic.
FIXED_NOW = datetime.datetime(2026, 11, 26, 12, 0, 0)

# Special tokens of the real models (tokenizer_config.json).
SPECIAL = {
    # Qwen/Qwen2.5-7B-Instruct: "bos_token": null, "eos_token": "<|im_end|>"
    "qwen2.5-instruct": {"bos_token": None, "eos_token": "<|im_end|>"},
    # Qwen/Qwen3-8B: "bos_token": null, "eos_token": "<|im_end|>"
    "qwen3": {"bos_token": None, "eos_token": "<|im_end|>"},
    "qwen3-legacy-2025-04": {"bos_token": None, "eos_token": "<|im_end|>"},
    # deepseek-ai/DeepSeek-R1-Distill-Qwen-*
    "deepseek-r1-distill-qwen": {
        "bos_token": "<\uff5cbegin\u2581of\u2581sentence\uff5c>",
        "eos_token": "<\uff5cend\u2581of\u2581sentence\uff5c>",
    },
    # meta-llama/Llama-3.1-8B-Instruct
    "llama-3.1-instruct": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
}

TEMPLATES = list(SPECIAL)


class GenerationTag(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}` as transformers' AssistantTracker parses it.

    Rendering-wise it just outputs its body (transformers only records character offsets
    when return_assistant_tokens_mask=True). None of the vendored templates uses it.
    """

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def make_env() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[GenerationTag, jinja2.ext.loopcontrols],
    )

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return FIXED_NOW.strftime(format)

    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def load_template_source(name: str) -> str:
    # Read bytes and decode strictly: the files are UTF-8 and must be used byte-for-byte.
    return (HERE / f"{name}.jinja").read_bytes().decode("utf-8")


# --------------------------------------------------------------------------------------
# Test conversations
# --------------------------------------------------------------------------------------

SYSTEM = "You are a concise assistant."

ONE_USER = [{"role": "user", "content": "Hello! What is 2 + 2?"}]

SYSTEM_USER = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "Hello! What is 2 + 2?"},
]

MULTI_TURN = [
    {"role": "user", "content": "Hi there."},
    {"role": "assistant", "content": "Hello! How can I help you today?"},
    {"role": "user", "content": "Tell me a joke about compilers."},
]

ENDS_WITH_ASSISTANT = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "The capital of France is Paris."},
]

UNICODE_TEXT = (
    "Caf\u00e9 cr\u00e8me, na\u00efve r\u00e9sum\u00e9 \u2014 \u4e2d\u6587\u6d4b\u8bd5\uff1a"
    "\u4f60\u597d\uff0c\u4e16\u754c\uff01 Emoji: \U0001F600\U0001F680 \U0001F1EB\U0001F1F7\n"
    "Quotes: \"double\" and 'single'; backslashes: C:\\Users\\me\\file.txt and \\n (literal);\n"
    "LaTeX: $\\frac{1}{2} + \\sqrt{x^2}$, \\begin{align} a &= b \\\\ c &= d \\end{align}\n"
    "Jinja-looking text: {{ not_a_var }} {% not_a_tag %} {# not a comment #}"
)

UNICODE = [
    {"role": "system", "content": "R\u00e9ponds en fran\u00e7ais. \u8bf7\u7528\u4e2d\u6587\u3002 \U0001F916"},
    {"role": "user", "content": UNICODE_TEXT},
    {"role": "assistant", "content": "\u00bd = \\frac{1}{2}. \u5b8c\u6210\uff01 \u2705 \"ok\" \\ done"},
    {"role": "user", "content": "  Padded with spaces and a tab\t, then newline \u00e9\u00e8\n  "},
]

THINK_IN_HISTORY = [
    {"role": "user", "content": "What is 17 * 3?"},
    {
        "role": "assistant",
        "content": "<think>\nThe user asks for 17 * 3. 17 * 3 = 51.\n</think>\n\n17 * 3 = 51.",
    },
    {"role": "user", "content": "And 51 / 3?"},
]

THINK_LAST_ASSISTANT = [
    {"role": "user", "content": "What is 17 * 3?"},
    {
        "role": "assistant",
        "content": "<think>\nThe user asks for 17 * 3. 17 * 3 = 51.\n</think>\n\n17 * 3 = 51.",
    },
]

REASONING_CONTENT_FIELD = [
    {"role": "user", "content": "Name a prime number greater than 10."},
    {
        "role": "assistant",
        "content": "11 is prime.",
        "reasoning_content": "Primes above 10: 11, 13, 17. The smallest is 11.",
    },
]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        # Non-ASCII plus the characters an HTML-safe tojson would escape (< > & ').
        "description": "Get the current weather (temp\u00e9rature, \u5929\u6c14) for a city. "
        "Use <b>only</b> when the user's question & context need it.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. \"Paris\""},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}

TOOLS_USER = [{"role": "user", "content": "What's the weather in Paris?"}]

TOOL_CALL_ROUND_TRIP = [
    {"role": "user", "content": "What's the weather in Paris?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    # key order matters (json.dumps keeps insertion order); mixed JSON types
                    "arguments": {"unit": "celsius", "city": "Paris", "days": 3, "detailed": True,
                                  "threshold": 0.5, "lang": None, "tags": ["a", "\u00e9"]},
                },
            }
        ],
    },
    {"role": "tool", "content": "{\"temperature\": 21, \"condition\": \"sunny\", \"note\": \"\u00e9t\u00e9\"}"},
]

# Same, but the arguments are a JSON *string* (OpenAI wire format): Qwen3 prints it raw
# (`is string`), Qwen2.5 and Llama 3.1 pass it through tojson (so it gets quoted).
TOOL_CALL_STRING_ARGS = [
    TOOL_CALL_ROUND_TRIP[0],
    {
        "role": "assistant",
        "content": "Let me check.",
        "tool_calls": [
            {
                "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"unit\": \"celsius\"}"},
            }
        ],
    },
    TOOL_CALL_ROUND_TRIP[2],
]


def case(name, messages, add_generation_prompt, **extra):
    return {
        "case": name,
        "messages": messages,
        "add_generation_prompt": add_generation_prompt,
        "extra": extra,
    }


COMMON = [
    case("a_one_user_genprompt", ONE_USER, True),
    case("b_system_user_genprompt", SYSTEM_USER, True),
    case("c_multi_turn_genprompt", MULTI_TURN, True),
    case("d_ends_with_assistant_no_genprompt", ENDS_WITH_ASSISTANT, False),
    case("f_unicode_escapes_latex_genprompt", UNICODE, True),
]

CASES = {
    "qwen2.5-instruct": COMMON
    + [
        case("g_tools_genprompt", TOOLS_USER, True, tools=[WEATHER_TOOL]),
        case("h_tool_call_round_trip_genprompt", TOOL_CALL_ROUND_TRIP, True, tools=[WEATHER_TOOL]),
        case("h2_tool_call_string_arguments_genprompt", TOOL_CALL_STRING_ARGS, True, tools=[WEATHER_TOOL]),
    ],
    "qwen3": COMMON
    + [
        case("e1_enable_thinking_false_genprompt", ONE_USER, True, enable_thinking=False),
        case("e2_enable_thinking_true_genprompt", ONE_USER, True, enable_thinking=True),
        case("e3_think_in_history_genprompt", THINK_IN_HISTORY, True),
        case("e4_think_in_history_enable_thinking_false", THINK_IN_HISTORY, True, enable_thinking=False),
        case("e5_think_in_last_assistant_no_genprompt", THINK_LAST_ASSISTANT, False),
        case("e6_reasoning_content_field_no_genprompt", REASONING_CONTENT_FIELD, False),
        case("g_tools_genprompt", TOOLS_USER, True, tools=[WEATHER_TOOL]),
        case("h_tool_call_round_trip_genprompt", TOOL_CALL_ROUND_TRIP, True, tools=[WEATHER_TOOL]),
        case("h2_tool_call_string_arguments_genprompt", TOOL_CALL_STRING_ARGS, True, tools=[WEATHER_TOOL]),
    ],
    "qwen3-legacy-2025-04": COMMON
    + [
        case("e1_enable_thinking_false_genprompt", ONE_USER, True, enable_thinking=False),
        case("e3_think_in_history_genprompt", THINK_IN_HISTORY, True),
        case("e5_think_in_last_assistant_no_genprompt", THINK_LAST_ASSISTANT, False),
        case("e6_reasoning_content_field_no_genprompt", REASONING_CONTENT_FIELD, False),
    ],
    "deepseek-r1-distill-qwen": COMMON
    + [
        case("e3_think_in_history_genprompt", THINK_IN_HISTORY, True),
        case("e5_think_in_last_assistant_no_genprompt", THINK_LAST_ASSISTANT, False),
    ],
    "llama-3.1-instruct": COMMON
    + [
        case("i_date_string_kwarg_genprompt", SYSTEM_USER, True, date_string="26 Nov 2026"),
        case("g_tools_genprompt", TOOLS_USER, True, tools=[WEATHER_TOOL]),
        case("g2_tools_in_system_genprompt", SYSTEM_USER, True, tools=[WEATHER_TOOL], tools_in_user_message=False),
        case("h_tool_call_round_trip_genprompt", TOOL_CALL_ROUND_TRIP, True, tools=[WEATHER_TOOL]),
        case("h2_tool_call_string_arguments_genprompt", TOOL_CALL_STRING_ARGS, True, tools=[WEATHER_TOOL]),
    ],
}

# Cases whose rendering must fail with raise_exception(...).
ERROR_CASES = {
    "llama-3.1-instruct": [
        # tools_in_user_message (default true) + tools, but no user message left after the system one.
        case("x_tools_without_user_message", [{"role": "system", "content": SYSTEM}], True, tools=[WEATHER_TOOL]),
        # Two tool calls in one assistant message.
        case(
            "x_two_tool_calls",
            [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Rome"}}},
                    ],
                },
            ],
            False,
        ),
    ],
}


def variables_for(template: str, c: dict) -> dict:
    """The exact dict passed to Template.render (and stored in the JSON)."""
    v = {
        "messages": c["messages"],
        "add_generation_prompt": c["add_generation_prompt"],
        "bos_token": SPECIAL[template]["bos_token"],
        "eos_token": SPECIAL[template]["eos_token"],
        "tools": None,
        "documents": None,
    }
    v.update(c["extra"])
    return v


def render(env, template_name: str, variables: dict) -> str:
    tmpl = env.from_string(load_template_source(template_name))
    # Deep-copy through JSON so the template sees plain JSON types (as transformers does).
    return tmpl.render(**json.loads(json.dumps(variables)))


def build():
    env = make_env()
    results, errors = [], []
    for t in TEMPLATES:
        for c in CASES[t]:
            v = variables_for(t, c)
            results.append({"template": t, "case": c["case"], "variables": v, "rendered": render(env, t, v)})
        for c in ERROR_CASES.get(t, []):
            v = variables_for(t, c)
            try:
                out = render(env, t, v)
            except jinja2.exceptions.TemplateError as e:
                errors.append({"template": t, "case": c["case"], "variables": v, "error": str(e)})
            else:
                raise SystemExit(f"error case {t}/{c['case']} rendered without error: {out!r}")
    return results, errors


def dump(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=2) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="compare with the files on disk, write nothing")
    args = ap.parse_args()

    results, errors = build()
    outputs = {EXPECTED: dump(results), EXPECTED_ERRORS: dump(errors)}
    print(f"jinja2 {jinja2.__version__}, python {sys.version.split()[0]}: "
          f"{len(results)} renders, {len(errors)} error cases", file=sys.stderr)
    if args.check:
        bad = [p.name for p, s in outputs.items() if not p.exists() or p.read_text(encoding="utf-8") != s]
        if bad:
            raise SystemExit(f"MISMATCH: {', '.join(bad)} differ from a fresh render")
        print("OK: expected files match a fresh render", file=sys.stderr)
        return
    for p, s in outputs.items():
        p.write_text(s, encoding="utf-8")
        print(f"wrote {p}", file=sys.stderr)


if __name__ == "__main__":
    main()
