"""Use cases: load, call the domain, persist — one transaction each, committed by the use case."""
