"""OpenAI-compatible API under `/v1`: models, embeddings, files and the Batch API.

Clients use the official `openai` package (or anything that takes a `base_url`) with the
platform's bearer token as the API key. A model serves an endpoint when it declares it
(`@model(openai="embeddings")`); its calls go to the same replicas (and batching) as `/infer`,
and each line of a batch becomes a task on the model's queue, under the owner's quotas and
fair share.
"""
