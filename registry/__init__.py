"""The registry: one detached Ray actor that knows which model instances are alive."""
