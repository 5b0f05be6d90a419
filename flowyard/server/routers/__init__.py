"""HTTP routes of Flowyard's API; each module is one kind of resource."""
