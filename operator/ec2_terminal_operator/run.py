"""For `kopf run -m ec2_terminal_operator.run`: registers handlers in kopf's default registry."""

from __future__ import annotations

import kopf

from app.telemetry import Component, setup_telemetry
from ec2_terminal_operator import footprint
from ec2_terminal_operator.config import OperatorConfig
from ec2_terminal_operator.handlers import register

footprint.limit_malloc_arenas()  # before any thread allocates
# Spans are flushed when the interpreter exits; /metrics is ec2-terminal-operator's alone.
setup_telemetry(Component.OPERATOR)
register(kopf.get_default_registry(), OperatorConfig.from_env())
