"""The live models as the gateway sees them: the registry's list, cached per replica
(`catalog`), and the switches an admin flips to disable a model (`switches`)."""
