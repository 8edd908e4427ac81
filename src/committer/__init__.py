"""The committer: signed round reports, DLC oracle attestations and Bitcoin L1 anchoring."""

__version__ = "0.1.0"
