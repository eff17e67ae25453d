"""Drives `ordo mcp` with the official MCP Python SDK's stdio client (PyPI `mcp`), for
tests/integration/mcp.rs.

    python mcp_client.py STEPS.json ORDO_BIN [ARG...]

Starts `ORDO_BIN ARG...` as an MCP server over stdio, initializes, lists the tools, then runs
the steps of STEPS.json (a JSON list) in order. A step:

    {"tool": NAME, "arguments": {...},          # the call; "${key}" in a string argument is
                                                # replaced by a saved value
     "save": {"key": "field"},                  # remember structuredContent[field] as key
     "until": {"field": F, "in": [V, ...]},     # repeat the call until structuredContent[F]
     "timeout": SECONDS}                        # is one of the values (default 60 s)

or a rendezvous with the test while the server keeps running (the test drives other processes
against what it serves meanwhile):

    {"write": PATH, "text": "..."}              # write the text ("${key}" replaced) to PATH
    {"await": PATH, "timeout": SECONDS}         # wait until PATH exists (default 60 s)

Prints one JSON document: the server's info and protocol version, the tools as listed, and
each step's result (isError, structuredContent, text content, calls made). Tool errors are
results; anything else going wrong (the protocol, the process, a step timing out) exits 1
with the reason on stderr.
"""

import asyncio
import json
import os
import re
import sys
import time

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


def substitute(value, saved):
    if isinstance(value, str):
        return re.sub(r"\$\{(\w+)\}", lambda m: str(saved[m.group(1)]), value)
    if isinstance(value, list):
        return [substitute(v, saved) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, saved) for k, v in value.items()}
    return value


def dump_result(result):
    return {
        "is_error": bool(result.is_error),
        "structured": result.structured_content,
        "text": [c.text for c in result.content if getattr(c, "type", None) == "text"],
    }


async def main(steps_path, command, args):
    with open(steps_path) as f:
        steps = json.load(f)
    params = StdioServerParameters(command=command, args=args)
    out = {"steps": []}
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            out["protocol_version"] = init.protocol_version
            out["server_info"] = init.server_info.model_dump(mode="json", exclude_none=True)
            out["capabilities"] = init.capabilities.model_dump(mode="json", exclude_none=True)
            listed = await session.list_tools()
            out["tools"] = [
                t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in listed.tools
            ]
            saved = {}
            for step in steps:
                if "write" in step:
                    with open(step["write"], "w") as f:
                        f.write(substitute(step["text"], saved))
                    continue
                if "await" in step:
                    deadline = time.monotonic() + step.get("timeout", 60)
                    while not os.path.exists(step["await"]):
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"{step['await']} never appeared")
                        await asyncio.sleep(0.05)
                    continue
                arguments = substitute(step.get("arguments", {}), saved)
                until = step.get("until")
                deadline = time.monotonic() + step.get("timeout", 60)
                calls = 0
                while True:
                    result = await session.call_tool(step["tool"], arguments)
                    calls += 1
                    structured = result.structured_content or {}
                    if until is None or structured.get(until["field"]) in until["in"]:
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"step {step['tool']}: {until['field']} never became one of "
                            f"{until['in']}; last result: {dump_result(result)}"
                        )
                    await asyncio.sleep(0.2)
                for key, field in step.get("save", {}).items():
                    saved[key] = structured[field]
                entry = dump_result(result)
                entry.update({"tool": step["tool"], "arguments": arguments, "calls": calls})
                out["steps"].append(entry)
    print(json.dumps(out))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    try:
        asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
    except BaseException as e:  # noqa: BLE001 - any failure is the test's failure
        if isinstance(e, SystemExit):
            raise
        print(f"mcp_client: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
