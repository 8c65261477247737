#!/usr/bin/env python3
"""Quire's MCP server through the official MCP Python SDK (``mcp`` on PyPI).

Run by ``crates/testkit/tests/api_mcp.rs`` against a live server it seeded; runs every check,
prints one line per check and ``N passed, M failed``, and exits non-zero when any failed.

Environment (set by the Rust test; no ``QUIRE_`` names, which the server reads):
    SDK_BASE_URL        the server, e.g. http://127.0.0.1:4321
    SDK_TENANT          the organization's id (X-Tenant-ID)
    SDK_TOKEN           an access token of its owner
    SDK_KEY             a member API key of it
    SDK_VIEWER_KEY      a viewer API key of it
    SDK_REVOKED_KEY     a revoked API key of it
    SDK_DOCUMENT        a ready document of it (a lease)
    SDK_OTHER_DOCUMENT  a ready document of another organization
    SDK_OTHER_TENANT    an organization the keys are not in
    SDK_QUOTA_TENANT    an organization whose monthly token quota is used up
    SDK_QUOTA_KEY       a member API key of that one
"""

import asyncio
import os
import sys
import traceback
from contextlib import asynccontextmanager

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

ENV = os.environ
URL = ENV["SDK_BASE_URL"].rstrip("/") + "/api/v1/mcp"
CHECKS = []


def check(name):
    def register(fn):
        CHECKS.append((name, fn))
        return fn

    return register


@asynccontextmanager
async def session(key, tenant=None):
    """An initialized MCP session with ``key`` (and ``X-Tenant-ID`` when given)."""
    headers = {"Authorization": f"Bearer {key}"}
    if tenant:
        headers["X-Tenant-ID"] = tenant
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        async with streamable_http_client(URL, http_client=http) as (read, write):
            async with ClientSession(read, write) as s:
                await asyncio.wait_for(s.initialize(), 30)
                yield s


def text_of(result):
    return "\n".join(block.text for block in result.content if getattr(block, "text", None))


def mcp_error(exc):
    """The MCPError in ``exc``, looking inside exception groups (the SDK's task groups)."""
    if isinstance(exc, MCPError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = mcp_error(inner)
            if found is not None:
                return found
    return None


async def refused(call):
    """``call`` must fail with the SDK's MCPError (a JSON-RPC error)."""
    try:
        await asyncio.wait_for(call(), 30)
    except Exception as e:  # noqa: BLE001 - the error is checked below
        found = mcp_error(e)
        assert found is not None, f"expected an MCPError, got {e!r}"
        return found
    raise AssertionError("expected an MCPError")


async def session_refused(key, tenant=None):
    """A session with these credentials must not get as far as listing the tools."""

    async def attempt():
        async with session(key, tenant) as s:
            await s.list_tools()

    return await refused(attempt)


@check("initialize and list the tools with an API key alone")
async def tools_listed():
    async with session(ENV["SDK_KEY"]) as s:
        tools = await s.list_tools()
        names = [t.name for t in tools.tools]
        assert names == ["search", "ask", "list_documents", "read_document"], names
        for t in tools.tools:
            assert t.input_schema["type"] == "object", t


@check("search finds the tenant's passage")
async def search():
    async with session(ENV["SDK_KEY"]) as s:
        result = await s.call_tool("search", {"query": "monthly rent"})
        assert not result.is_error, result
        hits = result.structured_content["results"]
        assert hits and all(h["document_id"] == ENV["SDK_DOCUMENT"] for h in hits), hits
        assert "1,200 euros" in text_of(result)


@check("ask answers with verified citations (access token and X-Tenant-ID)")
async def ask():
    async with session(ENV["SDK_TOKEN"], ENV["SDK_TENANT"]) as s:
        result = await s.call_tool("ask", {"question": "When does the lease end?"})
        assert not result.is_error, result
        answer = result.structured_content
        assert "thirty-first of March 2027" in answer["answer"], answer
        assert answer["sources"], answer
        assert all(c["document_id"] == ENV["SDK_DOCUMENT"] for c in answer["sources"]), answer
        assert "Sources:" in text_of(result)


@check("list and read documents")
async def documents():
    async with session(ENV["SDK_KEY"], ENV["SDK_TENANT"]) as s:
        listed = await s.call_tool("list_documents", {})
        ids = [d["id"] for d in listed.structured_content["items"]]
        assert ids == [ENV["SDK_DOCUMENT"]], ids
        read = await s.call_tool("read_document", {"document_id": ENV["SDK_DOCUMENT"]})
        assert not read.is_error, read
        assert "3,600 euros" in text_of(read)


@check("another organization's document is not found, and never searched")
async def other_tenant():
    async with session(ENV["SDK_KEY"]) as s:
        read = await s.call_tool("read_document", {"document_id": ENV["SDK_OTHER_DOCUMENT"]})
        assert read.is_error and read.structured_content["error"]["code"] == "not_found", read
        found = await s.call_tool("search", {"query": "launch code Falcon 4471"})
        assert "4471" not in text_of(found), found


@check("naming another organization is refused")
async def other_tenant_header():
    await session_refused(ENV["SDK_KEY"], ENV["SDK_OTHER_TENANT"])
    await session_refused(ENV["SDK_TOKEN"], ENV["SDK_OTHER_TENANT"])


@check("a revoked key is refused")
async def revoked():
    await session_refused(ENV["SDK_REVOKED_KEY"])
    await session_refused("qk_not-a-key")


@check("a viewer may search but not ask")
async def viewer():
    async with session(ENV["SDK_VIEWER_KEY"]) as s:
        found = await s.call_tool("search", {"query": "security deposit"})
        assert not found.is_error, found
        asked = await s.call_tool("ask", {"question": "When does the lease end?"})
        assert asked.is_error, asked
        assert asked.structured_content["error"]["code"] == "forbidden", asked


@check("a used-up quota is the tool's error, with when it resets")
async def quota():
    async with session(ENV["SDK_QUOTA_KEY"], ENV["SDK_QUOTA_TENANT"]) as s:
        asked = await s.call_tool("ask", {"question": "When does the lease end?"})
        assert asked.is_error, asked
        error = asked.structured_content["error"]
        assert error["code"] == "quota_exceeded" and error["resets_at"], error
        assert text_of(asked).startswith("quota_exceeded"), text_of(asked)


@check("bad arguments are a JSON-RPC error naming the field")
async def bad_arguments():
    async with session(ENV["SDK_KEY"]) as s:
        e = await refused(lambda: s.call_tool("search", {"query": "rent", "top_k": 0}))
        assert e.error.code == -32602, e.error
        assert "top_k" in e.error.message, e.error
        e = await refused(lambda: s.call_tool("no_such_tool", {}))
        assert e.error.code == -32602, e.error


async def main():
    passed = failed = 0
    for name, fn in CHECKS:
        try:
            await asyncio.wait_for(fn(), 120)
        except BaseException:  # noqa: BLE001 - every failure is reported, then counted
            failed += 1
            print(f"FAIL {name}")
            traceback.print_exc(file=sys.stdout)
        else:
            passed += 1
            print(f"ok   {name}")
    print(f"mcp: {passed} passed, {failed} failed")
    return failed


if __name__ == "__main__":
    sys.exit(1 if asyncio.run(main()) else 0)
