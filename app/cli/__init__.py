"""The `ec2-terminal` command line: one module per subcommand, `main` registering them."""
