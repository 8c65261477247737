#!/usr/bin/env python3
"""Quire's MCP server from the official MCP Python SDK (`pip install "mcp==2.3.0"`).

    QUIRE_URL=http://127.0.0.1:8080 QUIRE_KEY=qk_... python3 docs/examples/mcp_client.py "When does the lease end?"

QUIRE_KEY is an organization API key (it names its organization); with an access token instead,
set QUIRE_TENANT to the organization's id or slug too.
"""

import asyncio
import os
import sys

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client


async def main(question):
    headers = {"Authorization": f"Bearer {os.environ['QUIRE_KEY']}"}
    if os.environ.get("QUIRE_TENANT"):
        headers["X-Tenant-ID"] = os.environ["QUIRE_TENANT"]
    url = os.environ.get("QUIRE_URL", "http://127.0.0.1:8080").rstrip("/") + "/api/v1/mcp"
    async with httpx2.AsyncClient(headers=headers, timeout=120) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = await session.list_tools()
                print("tools:", ", ".join(t.name for t in tools.tools))

                listed = await session.call_tool("list_documents", {"limit": 5})
                print(listed.content[0].text, end="\n\n")

                found = await session.call_tool("search", {"query": question, "top_k": 3})
                print(found.content[0].text, end="\n\n")

                answer = await session.call_tool("ask", {"question": question})
                if answer.is_error:
                    # A refusal (quota, rate limit, role) says why: {code, detail, request_id}.
                    print("refused:", answer.structured_content["error"])
                else:
                    print(answer.content[0].text)


if __name__ == "__main__":
    asyncio.run(main(" ".join(sys.argv[1:]) or "What is this about?"))
