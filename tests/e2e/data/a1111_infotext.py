"""A Python port of AUTOMATIC1111's parse_generation_parameters (modules/infotext_utils.py),
written from its documented behaviour (docs/serve.md "PNG metadata"): prompt lines, an optional
"Negative prompt:" part, and a last line of `Key: value` pairs (JSON-quoted values unquoted,
"Size: WxH" split into Size-1 / Size-2); a last line with fewer than 3 pairs belongs to the prompt.
Used by the tests to check that our `parameters` chunks read back as A1111 reads them."""
import json
import re

RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
RE_SIZE = re.compile(r"^(\d+)x(\d+)$")


def parse_generation_parameters(text):
    res = {}
    prompt, negative, in_negative = "", "", False
    *lines, last = text.strip().split("\n")
    if len(RE_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[16:].strip()
        if in_negative:
            negative += ("" if negative == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line
    res["Prompt"], res["Negative prompt"] = prompt, negative
    for k, v in RE_PARAM.findall(last):
        if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
            v = json.loads(v)
        m = RE_SIZE.match(v)
        if m:
            res[k + "-1"], res[k + "-2"] = m.group(1), m.group(2)
        else:
            res[k] = v
    return res
