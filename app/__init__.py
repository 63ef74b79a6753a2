"""ec2-terminal: a browser terminal for EC2 instances."""
