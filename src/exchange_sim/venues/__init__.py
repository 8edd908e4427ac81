"""One small adapter per venue: parse the real query parameters, answer in the real format."""
