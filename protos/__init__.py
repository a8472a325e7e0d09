"""Protobuf sources, generated code, and the code turning descriptors into codecs and schemas."""
