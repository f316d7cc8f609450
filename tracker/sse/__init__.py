"""Live event gateway: Server-Sent Events of a tenant's events as they reach the broker."""
