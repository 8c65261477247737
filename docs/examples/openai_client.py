#!/usr/bin/env python3
"""Quire through the official OpenAI Python client (``pip install openai``).

Lists the models, asks a grounded question (not streamed, then streamed), asks a free
question, and embeds two texts, all against ``<QUIRE_URL>/api/v1/ai``.

Environment:
    QUIRE_URL              the server (default http://127.0.0.1:8080)
    QUIRE_API_KEY          a ``qk_`` API key of the organization, or an access token
    QUIRE_TENANT           the organization's id or slug (X-Tenant-ID)
    QUIRE_MODEL            the chat model (default: the first one GET /ai/models lists)
    QUIRE_EMBEDDING_MODEL  the embedding model (default quire-local-ngram-384)
    QUIRE_QUESTION         the grounded question (default "When does the lease end?")
"""

import os
import sys

from openai import OpenAI


def citations_of(obj):
    """The ``quire.citations`` Quire adds to a grounded answer (an extra field to the SDK)."""
    extra = getattr(obj, "model_extra", None) or {}
    return (extra.get("quire") or {}).get("citations", [])


def main() -> int:
    base = os.environ.get("QUIRE_URL", "http://127.0.0.1:8080").rstrip("/")
    client = OpenAI(
        base_url=f"{base}/api/v1/ai",
        api_key=os.environ["QUIRE_API_KEY"],
        default_headers={"X-Tenant-ID": os.environ["QUIRE_TENANT"]},
    )
    question = os.environ.get("QUIRE_QUESTION", "When does the lease end?")

    # The models this organization may use.
    models = [m.id for m in client.models.list()]
    print("models:", ", ".join(models))
    model = os.environ.get("QUIRE_MODEL") or models[0]

    # A grounded answer: Quire's extension goes in the body as `quire`; omit
    # `collection_ids` to search every document of the organization.
    grounding = {"quire": {"top_k": 4}}
    answer = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": question}],
        extra_body=grounding,
    )
    print("\n== grounded, not streamed ==")
    print(answer.choices[0].message.content)
    for c in citations_of(answer):
        print(f"  [{c['document_name']}] \"{c['quote']}\" (score {c['score']:.2f})")
    u = answer.usage
    print(f"usage: {u.prompt_tokens} + {u.completion_tokens} = {u.total_tokens} tokens")

    # The same, streamed: deltas as they come, the citations on the chunk with
    # finish_reason "stop", and the usage on a last chunk without choices.
    print("\n== grounded, streamed ==")
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": question}],
        stream=True,
        stream_options={"include_usage": True},
        extra_body=grounding,
    )
    text = []
    for chunk in stream:
        if chunk.choices:
            delta = chunk.choices[0].delta.content or ""
            text.append(delta)
            print(delta, end="", flush=True)
            if chunk.choices[0].finish_reason == "stop":
                print(f"\ncitations: {len(citations_of(chunk))}")
        elif chunk.usage:
            print(f"usage: {chunk.usage.total_tokens} tokens")
    if "".join(text) != answer.choices[0].message.content:
        print("note: the streamed text differs from the one above", file=sys.stderr)

    # A free conversation (no `quire`): the model answers from the prompt alone.
    free = client.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": "Answer in one sentence."},
            {"role": "user", "content": "Who are you?"},
        ],
    )
    print("\n== not grounded ==")
    print(free.choices[0].message.content)

    # Embeddings (the SDK asks for base64 and decodes it).
    embedding_model = os.environ.get("QUIRE_EMBEDDING_MODEL", "quire-local-ngram-384")
    embedded = client.embeddings.create(
        model=embedding_model, input=["monthly rent", "security deposit"]
    )
    print("\n== embeddings ==")
    print(
        f"{len(embedded.data)} vectors of {len(embedded.data[0].embedding)} dimensions "
        f"({embedded.model}, {embedded.usage.total_tokens} tokens)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
