"""What the services truly share: wire bindings, domain errors, exchanges, time, logging."""
