"""Load the rule files and adapters a runtime needs, once per process, failing fast on bad files."""

from __future__ import annotations

from typing import Any

from hotline.config import Settings


def load_components(settings: Settings) -> dict[str, Any]:
    from hotline.checklists import CHECKLIST_FILE, load_checklist
    from hotline.dispatch.config import load_dispatch_config
    from hotline.rules.loader import load_rule_set
    from hotline.sla.calendars import load_calendars
    from hotline.sla.policies import load_policies
    from hotline.telephony.sms import make_sms_backend

    calendars = load_calendars(settings.rules_dir / "calendars.yaml", settings.timezone)
    return {
        "rules": load_rule_set(settings.rules_dir),
        "calendars": calendars,
        "sla_policies": load_policies(settings.rules_dir / "sla.yaml", calendars),
        "dispatch": load_dispatch_config(settings.rules_dir / "dispatch.yaml"),
        "sms": make_sms_backend(settings),
        "checklist": load_checklist(settings.rules_dir / CHECKLIST_FILE),
    }
