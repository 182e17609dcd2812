"""The Host Provider: accepts deployments shipped by Service Providers and hosts them
(code packages as processes, :mod:`.backends.process`)."""
