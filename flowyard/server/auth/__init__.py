"""Who may do what: tokens and roles (``tokens``), which request needs what (``policy``), and the
middleware that checks every request (``middleware``)."""
