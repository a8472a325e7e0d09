"""The Open Inference Protocol v2 (KServe, Triton) for models with flat messages: the tensor
codec between a model's messages and the protocol's tensors (`codec`), its REST routes under
`/v2` (`routes`), and the same protocol over gRPC (`grpc`), each gateway replica serving it."""
