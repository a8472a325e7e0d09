"""The Open Inference Protocol v2 over gRPC (`inference.GRPCInferenceService`), served by each
gateway replica beside its REST routes, with the same accounts, limits and model calls.

Ray Serve's own gRPC proxy routes a call to an application named in the call's `application`
metadata, or to the only one deployed; standard clients (tritonclient, KServe's) send no such
key and the platform runs an application per model, so the gateway serves gRPC itself.
"""
