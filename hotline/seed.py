"""Reference and demo data: Qingpu's 11 towns, the funeral home team, pilot agencies and staff accounts.

Town codes are the National Bureau of Statistics codes (统计用区划代码, 2023). Agencies are piloted in
练塘镇, 白鹤镇, 夏阳街道 and 盈浦街道; the funeral home's own team serves every town and is the fallback.
"""

from __future__ import annotations

import logging
from datetime import date

from sqlmodel import Session, select
from werkzeug.security import generate_password_hash

from hotline import agencies
from hotline.clock import now
from hotline.models import Agency, Town, User

log = logging.getLogger("hotline.seed")

TOWNS = (
    ("310118001", "夏阳街道", True),
    ("310118002", "盈浦街道", True),
    ("310118003", "香花桥街道", False),
    ("310118102", "朱家角镇", False),
    ("310118103", "练塘镇", True),
    ("310118104", "金泽镇", False),
    ("310118105", "赵巷镇", False),
    ("310118106", "徐泾镇", False),
    ("310118107", "华新镇", False),
    ("310118109", "重固镇", False),
    ("310118110", "白鹤镇", True),
)

ON_SITE_SERVICES = ["body_transport", "funeral_arrangement", "ash_storage", "eco_burial"]

# Invented demo agencies; real ones are entered by the bureau after vetting (备案). The credit codes carry
# a correct GB 32100-2015 check character, and the price lists sit on the reserved .example domain.
DEMO_AGENCIES = (
    {
        "name": "青浦区殡仪馆接运服务队",
        "kind": "funeral_home",
        "credit_code": "12310118MB2F00001L",
        "filing_number": "青民殡备〔2026〕000号",
        "towns": ["*"],
        "services": ON_SITE_SERVICES,
        "price_list_url": "https://qpbz.example/price-lists/funeral-home.pdf",
        "duty_hours": "00:00-24:00",
        "capacity": 6,
        # The duty dispatcher's mobile: offers are SMS, which a landline cannot receive.
        "contact_phone": "+8613900000000",
        # The funeral home's published number.
        "other_phones": ["+862159203790"],
    },
    {
        "name": "青浦安泰殡葬服务有限公司",
        "kind": "agency",
        "credit_code": "91310118MA1K00001H",
        "filing_number": "青民殡备〔2026〕001号",
        "towns": ["310118001", "310118002"],
        "services": ON_SITE_SERVICES,
        "price_list_url": "https://qpbz.example/price-lists/anta.pdf",
        "duty_hours": "00:00-24:00",
        "capacity": 3,
        "contact_phone": "+8613900000001",
    },
    {
        "name": "练塘福顺礼仪服务社",
        "kind": "agency",
        "credit_code": "92310118MA1K00002H",
        "filing_number": "青民殡备〔2026〕002号",
        "towns": ["310118103", "310118110"],
        "services": ["body_transport", "funeral_arrangement", "ash_storage"],
        "price_list_url": "https://qpbz.example/price-lists/fushun.pdf",
        "duty_hours": "00:00-24:00",
        "capacity": 2,
        "contact_phone": "+8613900000002",
    },
    {
        "name": "上海淀山湖殡葬代理有限公司",
        "kind": "agency",
        "credit_code": "91310118MA1K00003P",
        "filing_number": "青民殡备〔2026〕003号",
        "towns": ["310118001", "310118002", "310118103", "310118110"],
        "services": ON_SITE_SERVICES,
        "price_list_url": "https://qpbz.example/price-lists/dianshanhu.pdf",
        "duty_hours": "00:00-24:00",
        "capacity": 3,
        "contact_phone": "+8613900000003",
    },
)
SEED_ACTOR = "seed"
SEED_APPROVAL_REASON = "演示数据：备案材料已审核"

DEMO_USERS = (
    ("operator", "话务员 王丽", "operator", None),
    ("supervisor", "值班主管 张强", "supervisor", "+8613900000010"),
    # The admin's mobile receives the reminders before an agency's filing or licence expires.
    ("admin", "系统管理员", "admin", "+8613900000011"),
)


def seed_towns(session: Session) -> int:
    """Insert the towns that are missing; return how many were added."""
    known = set(session.exec(select(Town.code)).all())
    added = 0
    for code, name, pilot in TOWNS:
        if code not in known:
            session.add(Town(code=code, name=name, pilot=pilot))
            added += 1
    return added


def seed_agencies(session: Session, licence_expires_on: date, filing_expires_on: date | None = None) -> int:
    """Register and approve the demo agencies that are missing; return how many were added.

    Both documents expire on `licence_expires_on` unless `filing_expires_on` is given. Each agency goes
    through the registry, so its history shows the registration and the approval.
    """
    known = set(session.exec(select(Agency.name)).all())
    at = now()
    added = 0
    for spec in DEMO_AGENCIES:
        if spec["name"] in known:
            continue
        fields = {**spec, "licence_expires_on": licence_expires_on.isoformat(),
                  "filing_expires_on": (filing_expires_on or licence_expires_on).isoformat()}
        agency = agencies.create_agency(session, fields, actor=SEED_ACTOR, user_id=None, now=at)
        agencies.change_status(session, agency, "approved", SEED_APPROVAL_REASON, actor=SEED_ACTOR, user_id=None,
                               now=at)
        added += 1
    return added


def seed_users(session: Session, password: str) -> list[str]:
    """Create the demo staff accounts that are missing, all with `password`; return their usernames."""
    known = set(session.exec(select(User.username)).all())
    created = []
    for username, display_name, role, phone in DEMO_USERS:
        if username in known:
            continue
        session.add(User(username=username, display_name=display_name, role=role, phone=phone,
                         on_duty=role == "supervisor", password_hash=generate_password_hash(password)))
        created.append(username)
    return created


def seed_kb_articles(session: Session) -> int:
    """Add the knowledge articles that are missing, matched by title, as version 1; return how many were added."""
    from hotline.clock import now as clock_now
    from hotline.kb.articles import create_article
    from hotline.kb.seed_articles import ARTICLES
    from hotline.models import KbArticle

    known = set(session.exec(select(KbArticle.title)).all())
    at = clock_now()
    added = 0
    for fields in ARTICLES:
        if fields.title not in known:
            create_article(session, fields, actor="seed", now=at, change_note="初始内容")
            added += 1
    return added
