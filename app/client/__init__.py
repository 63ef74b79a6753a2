"""A command-line client of the session server: `ec2-terminal attach`."""
