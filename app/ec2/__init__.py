"""EC2 targets: boto3 clients, instance resolution, Instance Connect, console host keys."""
