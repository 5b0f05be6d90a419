"""What the API does, apart from how it is spoken: routers call these."""
