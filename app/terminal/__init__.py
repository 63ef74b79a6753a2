"""The terminal core: the wire protocol, sessions and the bridge between a socket and a PTY."""
