"""SMS alerts and incident escalations: the rules around sending (rate limit, throughput cap,
quiet hours, the incident index). The job handlers that apply them are in
`chalicelib/handlers/sms.py`; the routes in `chalicelib/api/alerts.py`.
"""

from __future__ import annotations

SEVERITIES = ("critical", "warning", "info")
# A critical alert never waits behind warnings, nor a warning behind infos: one queue each.
SEVERITY_PRIORITY = {"critical": "critical", "warning": "high", "info": "normal"}
