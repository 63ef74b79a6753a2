"""The peer suite: ec2-terminal against ssh -tt and the web terminals users would pick instead."""
