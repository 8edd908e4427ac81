"""What the oracle's services truly share: wire bindings, domain errors, exchanges, time, logging."""
