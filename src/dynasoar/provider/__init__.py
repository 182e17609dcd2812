"""The Service Provider: advertises services, deploys them on Host Providers on the first
message, and relays messages to the deployments (the routing interceptor, :mod:`.chain`)."""
