"""The kopf operator for TerminalSession resources."""
