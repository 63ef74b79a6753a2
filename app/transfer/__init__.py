"""File transfer to and from the target, over SFTP on a session's own SSH connection."""
