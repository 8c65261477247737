#!/usr/bin/env python3
"""Quire's OpenAI surface through the official OpenAI Python SDK (``openai`` on PyPI).

Run by ``crates/testkit/tests/openai_sdk.rs`` against a live server it seeded; exits non-zero
at the first check that fails, naming it. Every call is made with ``max_retries=0`` so that an
answer the SDK would retry shows at once.

Environment (set by the Rust test; no ``QUIRE_`` names, which the server reads):
    SDK_BASE_URL         the server, e.g. http://127.0.0.1:4321
    SDK_TENANT           the organization's id (X-Tenant-ID)
    SDK_KEY              a member API key of it
    SDK_VIEWER_KEY       a viewer API key of it
    SDK_REVOKED_KEY      a revoked API key of it
    SDK_COLLECTION       a collection of it holding a ready document
    SDK_OTHER_TENANT     an organization the keys are not in
    SDK_QUOTA_TENANT     an organization whose monthly token quota is used up
    SDK_QUOTA_KEY        a member API key of that one
    SDK_CHAT_MODEL       the chat model the list must hold
    SDK_EMBEDDING_MODEL  the embedding model the list must hold
"""

import base64
import os
import struct
import sys

import openai
from openai import OpenAI

ENV = os.environ
CHECKS = []


def client(key, tenant=None):
    headers = {"X-Tenant-ID": tenant} if tenant else {}
    return OpenAI(
        base_url=ENV["SDK_BASE_URL"].rstrip("/") + "/api/v1/ai",
        api_key=key,
        default_headers=headers,
        max_retries=0,
        timeout=60,
    )


def check(name):
    def register(fn):
        CHECKS.append((name, fn))
        return fn

    return register


def raises(exc_type, call, *, status, code=None, contains=None, error_type=None):
    """Runs ``call``, which must raise exactly ``exc_type`` (an SDK class) with this status,
    Quire's ``code``, OpenAI's ``type`` and a message holding ``contains``."""
    try:
        call()
    except openai.APIStatusError as e:
        assert type(e) is exc_type, f"expected {exc_type.__name__}, got {type(e).__name__}: {e}"
        assert e.status_code == status, f"status {e.status_code}: {e}"
        body = e.body if isinstance(e.body, dict) else {}
        assert body.get("message"), f"an OpenAI error object with a message: {e.body!r}"
        if code is not None:
            assert e.code == code, f"code {e.code!r}, expected {code!r}: {e.body!r}"
        if error_type is not None:
            assert e.type == error_type, f"type {e.type!r}, expected {error_type!r}: {e.body!r}"
        if contains is not None:
            assert contains in body["message"], f"{contains!r} not in {body['message']!r}"
        assert e.request_id, "the SDK reads X-Request-ID"
        return e
    raise AssertionError(f"expected {exc_type.__name__}, nothing was raised")


def ask(c, **extra):
    return c.chat.completions.create(
        model=ENV["SDK_CHAT_MODEL"],
        messages=[{"role": "user", "content": "When does the lease end?"}],
        **extra,
    )


@check("models.list finds a chat model and an embedding model")
def models_list():
    ids = [m.id for m in client(ENV["SDK_KEY"], ENV["SDK_TENANT"]).models.list()]
    assert ENV["SDK_CHAT_MODEL"] in ids, ids
    assert ENV["SDK_EMBEDDING_MODEL"] in ids, ids
    for m in client(ENV["SDK_KEY"], ENV["SDK_TENANT"]).models.list():
        assert m.object == "model" and m.owned_by == "quire", m


@check("chat completions, not streamed then streamed, say the same")
def chat():
    c = client(ENV["SDK_KEY"], ENV["SDK_TENANT"])
    grounded = {"quire": {"collection_ids": [ENV["SDK_COLLECTION"]]}}
    answer = ask(c, extra_body=grounded)
    text = answer.choices[0].message.content
    assert "thirty-first of March 2027" in text, text
    assert answer.choices[0].finish_reason == "stop", answer
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens > 0
    assert answer.model_extra["quire"]["citations"], answer.model_extra

    streamed, usage, citations = [], None, None
    with ask(
        c, stream=True, stream_options={"include_usage": True}, extra_body=grounded
    ) as stream:
        for chunk in stream:
            if chunk.choices:
                streamed.append(chunk.choices[0].delta.content or "")
                if chunk.choices[0].finish_reason == "stop":
                    citations = chunk.model_extra["quire"]["citations"]
            elif chunk.usage:
                usage = chunk.usage
    assert "".join(streamed) == text, ("".join(streamed), text)
    assert usage is not None and usage.total_tokens > 0, usage
    assert citations, "the citations come on the chunk with finish_reason stop"


@check("embeddings of a listed model: float, base64 and the SDK's default are equal")
def embeddings():
    c = client(ENV["SDK_KEY"], ENV["SDK_TENANT"])
    model = ENV["SDK_EMBEDDING_MODEL"]
    texts = ["monthly rent", "security deposit"]
    floats = c.embeddings.create(model=model, input=texts, encoding_format="float")
    raw = c.embeddings.create(model=model, input=texts, encoding_format="base64")
    default = c.embeddings.create(model=model, input=texts)
    assert floats.model == model and len(floats.data) == 2, floats
    for f, r, d in zip(floats.data, raw.data, default.data):
        assert isinstance(r.embedding, str), "base64 is a string on the wire"
        packed = base64.b64decode(r.embedding)
        decoded = list(struct.unpack(f"<{len(packed) // 4}f", packed))
        assert len(f.embedding) == len(decoded) > 0
        assert f.embedding == decoded, "the base64 vector is the float vector"
        assert list(d.embedding) == decoded, "the SDK's default (base64, decoded) too"
    assert floats.usage.total_tokens > 0


@check("an unsupported encoding_format is a 422 naming it")
def bad_encoding():
    c = client(ENV["SDK_KEY"], ENV["SDK_TENANT"])
    e = raises(
        openai.UnprocessableEntityError,
        lambda: c.embeddings.create(
            model=ENV["SDK_EMBEDDING_MODEL"], input="x", extra_body={"encoding_format": "int8"}
        ),
        status=422,
        code="validation_failed",
        error_type="invalid_request_error",
        contains="encoding_format",
    )
    assert e.param == "encoding_format", e.body


@check("a model the organization does not have: BadRequestError / UnprocessableEntityError")
def bad_model():
    c = client(ENV["SDK_KEY"], ENV["SDK_TENANT"])
    raises(
        openai.BadRequestError,
        lambda: c.chat.completions.create(
            model="gpt-9", messages=[{"role": "user", "content": "Hi"}]
        ),
        status=400,
        code="validation_failed",
        contains='the model "gpt-9" is not available to this organization',
    )
    e = raises(
        openai.UnprocessableEntityError,
        lambda: c.embeddings.create(model="gpt-9", input="x"),
        status=422,
        contains='unknown embedding model "gpt-9"',
    )
    assert e.param == "model", e.body


@check("a used-up quota is a RateLimitError the SDK does not retry")
def quota():
    c = OpenAI(
        base_url=ENV["SDK_BASE_URL"].rstrip("/") + "/api/v1/ai",
        api_key=ENV["SDK_QUOTA_KEY"],
        default_headers={"X-Tenant-ID": ENV["SDK_QUOTA_TENANT"]},
        max_retries=2,
        timeout=60,
    )
    for call in (
        lambda: ask(c),
        lambda: c.embeddings.create(model=ENV["SDK_EMBEDDING_MODEL"], input="monthly rent"),
    ):
        e = raises(
            openai.RateLimitError,
            call,
            status=429,
            code="quota_exceeded",
            error_type="insufficient_quota",
            contains="quota",
        )
        assert e.response.headers.get("x-should-retry") == "false", e.response.headers
        assert e.body.get("resets_at"), e.body


@check("a wrong or revoked key is an AuthenticationError")
def wrong_key():
    for key in ("qk_not-a-key", ENV["SDK_REVOKED_KEY"]):
        raises(
            openai.AuthenticationError,
            lambda: client(key, ENV["SDK_TENANT"]).models.list(),
            status=401,
            code="unauthenticated",
            error_type="authentication_error",
        )


@check("a viewer key lists models but may not call them: PermissionDeniedError")
def viewer():
    c = client(ENV["SDK_VIEWER_KEY"], ENV["SDK_TENANT"])
    assert [m.id for m in c.models.list()], "viewers list models"
    raises(
        openai.PermissionDeniedError,
        lambda: ask(c),
        status=403,
        error_type="permission_error",
    )


@check("another organization, or none named: NotFoundError / BadRequestError")
def tenants():
    raises(
        openai.NotFoundError,
        lambda: client(ENV["SDK_KEY"], ENV["SDK_OTHER_TENANT"]).models.list(),
        status=404,
        code="not_found",
        error_type="not_found_error",
    )
    raises(
        openai.BadRequestError,
        lambda: client(ENV["SDK_KEY"]).models.list(),
        status=400,
        code="tenant_required",
    )


def main():
    print(f"openai {openai.__version__}, Python {sys.version.split()[0]}")
    failed = 0
    for name, fn in CHECKS:
        try:
            fn()
            print(f"ok    {name}")
        except Exception as e:  # noqa: BLE001 - every failure is reported, then the exit code says
            failed += 1
            print(f"FAIL  {name}: {type(e).__name__}: {e}")
    print(f"{len(CHECKS) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
