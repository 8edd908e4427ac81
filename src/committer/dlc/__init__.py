"""The DLC oracle (dlcspecs Oracle.md and Messaging.md): announcements, attestations, nonces."""
