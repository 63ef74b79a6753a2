module ec2-terminal.local/realnode

go 1.26.0
