"""For `kopf run -m ec2_terminal_operator.run`: registers handlers in kopf's default registry."""

from __future__ import annotations

import kopf

from ec2_terminal_operator.config import OperatorConfig
from ec2_terminal_operator.handlers import register

register(kopf.get_default_registry(), OperatorConfig.from_env())
