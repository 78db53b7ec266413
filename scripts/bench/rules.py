"""Rule evaluation benchmark: tickets per second through the priority rules, against plain Python.

Two rule sets are measured in one process on one core:

- the shipped routing_rules/priority.yaml;
- a generated set of 200 rules over the same facts (`--rules` changes the count).

For each set, a plain-Python baseline makes the same decisions: hand-written predicates for the shipped
rules and Python lambdas generated alongside the YAML for the generated set, combined by a loop that
produces the same priority, queue rank, trace and reasons. Before timing, every ticket's decision from
the engine is checked against the baseline's; a difference stops the run. The engine is also timed with
compiled=False, which evaluates every condition with rule-engine itself.

Usage: .venv/bin/python scripts/bench/rules.py [--tickets 20000] [--repeat 5] [--rules 200]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hotline.config import DEFAULT_RULES_DIR
from hotline.rules.engine import RuleSet
from hotline.rules.facts import facts_with_defaults
from hotline.rules.loader import load_rule_set

TARGET_PER_SECOND = 20_000
CATEGORIES = ["consultation", "agency_service", "assisted_application", "complaint", "callback", "eco_burial"]
NEEDS = ["body_transport", "funeral_arrangement", "ash_storage", "eco_burial", "subsidy_info", "death_procedures"]
FLAGS = ["solitary_elderly", "childless_elderly", "low_income", "disabled", "no_smartphone"]
SOURCES = ["resident", "resident", "resident", "elderly_advisor", "assistance_advisor", "community_worker",
           "shequyun"]
TOWNS = ["练塘镇", "白鹤镇", "夏阳街道", "盈浦街道", "金泽镇", "朱家角镇", "赵巷镇", ""]
LABELS = ("P1", "P2", "P3", "P4")


@dataclass(frozen=True)
class PlainRule:
    """A rule of the baseline: a Python predicate and the effects, as in priority.yaml."""

    id: str
    description: str
    predicate: Callable[[dict[str, Any]], bool]
    set_priority: int | None = None
    set_queue_rank: int | None = None
    raise_steps: int = 0
    add_tags: tuple[str, ...] = ()


def make_tickets(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """Build the facts of `count` tickets with a mix of categories, needs, flags, sources and history."""
    rng = random.Random(seed)
    tickets = []
    for _ in range(count):
        source = rng.choice(SOURCES)
        tickets.append(facts_with_defaults({
            "category": rng.choice(CATEGORIES),
            "source": source,
            "channel": "phone" if source == "resident" else "referral_api",
            "needs": rng.sample(NEEDS, rng.choice([0, 0, 1, 1, 2])),
            "flags": rng.sample(FLAGS, rng.choice([0, 0, 0, 1, 2])),
            "tags": ["repeat_caller"] if rng.random() < 0.05 else [],
            "town": rng.choice(TOWNS),
            "pilot_town": rng.random() < 0.4,
            "calls_last_30_days": float(rng.choice([0, 0, 1, 2, 3, 5])),
            "open_tickets_of_caller": float(rng.choice([0, 0, 1])),
            "working_time": rng.random() < 0.6,
            "holiday": rng.random() < 0.1,
        }))
    return tickets


def shipped_baseline(shipped: RuleSet) -> tuple[int, int, list[PlainRule]]:
    """The shipped priority.yaml written as Python: defaults P4 and queue rank 100, then the rules in order.

    Descriptions are read from `shipped`, because they are text and change without changing a decision.
    """
    vulnerable = {"solitary_elderly", "childless_elderly", "low_income"}
    standard = {"consultation", "assisted_application", "complaint", "callback"}
    text = {rule.id: rule.description for rule in shipped.rules}
    rules = [
        PlainRule("agency-service-base", text["agency-service-base"],
                  lambda f: f["category"] == "agency_service", set_priority=2),
        PlainRule("standard-category-base", text["standard-category-base"],
                  lambda f: f["category"] in standard, set_priority=3),
        PlainRule("eco-burial-base", text["eco-burial-base"],
                  lambda f: f["category"] == "eco_burial", set_priority=4),
        PlainRule("body-transport-urgent", text["body-transport-urgent"],
                  lambda f: "body_transport" in f["needs"], set_priority=1),
        PlainRule("referral-first", text["referral-first"], lambda f: f["is_referral"], set_queue_rank=10),
        PlainRule("vulnerable-resident", text["vulnerable-resident"],
                  lambda f: not vulnerable.isdisjoint(f["flags"]), raise_steps=1),
        PlainRule("repeat-caller", text["repeat-caller"],
                  lambda f: f["calls_last_30_days"] >= 3 and f["open_tickets_of_caller"] >= 1,
                  add_tags=("repeat_caller",)),
    ]
    return 4, 100, rules


def plain_decide(default_priority: int, default_queue_rank: int, rules: Sequence[PlainRule],
                 facts: dict[str, Any]) -> dict[str, Any]:
    """Decide as hotline.rules.engine does, in plain Python: sets, then raises, queue rank, tags, trace."""
    matching = [rule for rule in rules if rule.predicate(facts)]
    set_priority, queue_rank, steps = default_priority, default_queue_rank, 0
    for rule in matching:
        if rule.set_priority is not None and rule.set_priority < set_priority:
            set_priority = rule.set_priority
        if rule.set_queue_rank is not None and rule.set_queue_rank < queue_rank:
            queue_rank = rule.set_queue_rank
        steps += rule.raise_steps

    changes: dict[str, dict[str, Any]] = {rule.id: {} for rule in matching}
    for rule in matching:
        if rule.set_priority == set_priority and set_priority < default_priority:
            changes[rule.id]["priority"] = LABELS[set_priority - 1]
        if rule.set_queue_rank == queue_rank and queue_rank < default_queue_rank:
            changes[rule.id]["queue_rank"] = queue_rank
    current = set_priority
    for rule in matching:
        applied = min(rule.raise_steps, current - 1)
        if applied > 0:
            current -= applied
            changes[rule.id]["raise"] = applied
            changes[rule.id]["raised_to"] = LABELS[current - 1]
    seen = set(facts["tags"])
    for rule in matching:
        new = [tag for tag in rule.add_tags if tag not in seen]
        seen.update(new)
        if new:
            changes[rule.id]["add_tags"] = new

    trace = [{"rule": rule.id, "matched": rule.id in changes, "changes": changes.get(rule.id, {})} for rule in rules]
    reasons = [f"{_effects(changes[rule.id])}：{rule.description}（规则 {rule.id}）"
               for rule in matching if changes[rule.id]]
    return {"priority": max(1, set_priority - steps), "queue_rank": queue_rank, "trace": trace, "reasons": reasons}


def _effects(changes: dict[str, Any]) -> str:
    parts = []
    if "priority" in changes:
        parts.append(changes["priority"])
    if "raise" in changes:
        parts.append(f"提升{changes['raise']}级至{changes['raised_to']}")
    if "queue_rank" in changes:
        parts.append(f"队内排序{changes['queue_rank']}")
    if "add_tags" in changes:
        parts.append(f"加标签 {', '.join(changes['add_tags'])}")
    return "，".join(parts)


def generated_rules(count: int, folder: Path, seed: int = 11) -> tuple[RuleSet, list[PlainRule]]:
    """Write `count` rules to folder/priority.yaml and return the loaded set with the same rules as Python."""
    rng = random.Random(seed)
    lines = ["defaults: {priority: P4, queue_rank: 100}", "rules:"]
    plain = []
    for index in range(count):
        text, predicate = _generated_condition(rng)
        effect, fields = _generated_effect(rng)
        rule_id = f"generated-{index}"
        lines.append(f"  - id: {rule_id}\n    description: 生成规则{index}\n    when: '{text}'\n    {effect}")
        plain.append(PlainRule(rule_id, f"生成规则{index}", predicate, **fields))
    (folder / "priority.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_rule_set(folder), plain


def _generated_condition(rng: random.Random) -> tuple[str, Callable[[dict[str, Any]], bool]]:
    category, need, flag, town = rng.choice(CATEGORIES), rng.choice(NEEDS), rng.choice(FLAGS), rng.choice(TOWNS)
    calls = rng.choice([1, 2, 3, 4])
    shape = rng.randrange(5)
    if shape == 0:
        return (f'category == "{category}" and "{need}" in needs',
                lambda f: f["category"] == category and need in f["needs"])
    if shape == 1:
        return f'"{flag}" in flags or holiday', lambda f: flag in f["flags"] or f["holiday"]
    if shape == 2:
        return (f'town == "{town}" and is_referral and not working_time',
                lambda f: f["town"] == town and f["is_referral"] and not f["working_time"])
    if shape == 3:
        return (f'calls_last_30_days >= {calls} and open_tickets_of_caller >= 1',
                lambda f: f["calls_last_30_days"] >= calls and f["open_tickets_of_caller"] >= 1)
    second = rng.choice(CATEGORIES)
    return (f'category in ["{category}", "{second}"] and pilot_town',
            lambda f: f["category"] in (category, second) and f["pilot_town"])


def _generated_effect(rng: random.Random) -> tuple[str, dict[str, Any]]:
    choice = rng.randrange(4)
    if choice == 0:
        priority = rng.randint(1, 4)
        return f"set: {{priority: P{priority}}}", {"set_priority": priority}
    if choice == 1:
        rank = rng.choice([5, 10, 20, 50])
        return f"set: {{queue_rank: {rank}}}", {"set_queue_rank": rank}
    if choice == 2:
        steps = rng.randint(1, 2)
        return f"raise: {steps}", {"raise_steps": steps}
    tag = rng.choice(["watch", "callback_today", "senior_staff"])
    return f"add_tags: [{tag}]", {"add_tags": (tag,)}


def check_same(rule_set: RuleSet, default_priority: int, default_queue_rank: int, plain: Sequence[PlainRule],
               tickets: Sequence[dict[str, Any]]) -> None:
    """Stop with an error when the engine and the baseline differ on any ticket."""
    for number, facts in enumerate(tickets):
        engine = rule_set.evaluate_priority(facts)
        baseline = plain_decide(default_priority, default_queue_rank, plain, facts)
        same = (engine.priority == baseline["priority"] and engine.queue_rank == baseline["queue_rank"]
                and engine.trace == baseline["trace"]
                and [reason["text_zh"] for reason in engine.reasons] == baseline["reasons"])
        if not same:
            raise SystemExit(f"decision differs on ticket {number} of {rule_set.source}: {facts}")


def rate(evaluate: Callable[[dict[str, Any]], Any], tickets: Sequence[dict[str, Any]], repeat: int) -> float:
    """Return the median tickets per second over `repeat` passes through `tickets`."""
    rates = []
    for _ in range(repeat):
        began = time.perf_counter()
        for facts in tickets:
            evaluate(facts)
        rates.append(len(tickets) / (time.perf_counter() - began))
    return statistics.median(rates)


def measure(name: str, rule_set: RuleSet, plain: Sequence[PlainRule], tickets, repeat: int) -> tuple[str, float]:
    """Check the decisions, then return a table row and the engine's tickets per second."""
    check_same(rule_set, rule_set.default_priority, rule_set.default_queue_rank, plain, tickets)
    engine = rate(rule_set.evaluate_priority, tickets, repeat)
    baseline = rate(lambda facts: plain_decide(rule_set.default_priority, rule_set.default_queue_rank, plain,
                                                facts), tickets, repeat)
    slow_tickets = tickets[: max(1, len(tickets) // 10)]
    rule_engine_rate = rate(lambda facts: rule_set.evaluate_priority(facts, compiled=False), slow_tickets, 1)
    row = (f"{name:<22} {len(rule_set.rules):>5} {engine:>12,.0f} {baseline:>12,.0f} {engine / baseline:>7.2f} "
           f"{rule_engine_rate:>14,.0f}")
    return row, engine


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=20_000, help="tickets per pass (default 20000)")
    parser.add_argument("--repeat", type=int, default=5, help="timed passes; the median is printed (default 5)")
    parser.add_argument("--rules", type=int, default=200, help="rules in the generated set (default 200)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    tickets = make_tickets(args.tickets)
    shipped = load_rule_set(DEFAULT_RULES_DIR)
    default_priority, default_queue_rank, shipped_plain = shipped_baseline(shipped)
    assert (shipped.default_priority, shipped.default_queue_rank) == (default_priority, default_queue_rank)

    emit(f"python {platform.python_version()}, {os.cpu_count()} CPUs, one process on one core, "
          f"{args.tickets:,} tickets per pass, median of {args.repeat} passes")
    emit(f"{'rule set':<22} {'rules':>5} {'engine /s':>12} {'plain /s':>12} {'ratio':>7} {'rule-engine /s':>14}")
    row, shipped_rate = measure("shipped priority.yaml", shipped, shipped_plain, tickets, args.repeat)
    emit(row)
    with tempfile.TemporaryDirectory() as folder:
        generated, generated_plain = generated_rules(args.rules, Path(folder))
        row, _ = measure(f"generated {args.rules} rules", generated, generated_plain, tickets, args.repeat)
        emit(row)

    verdict = "PASS" if shipped_rate >= TARGET_PER_SECOND else "FAIL"
    emit(f"{verdict}  shipped rules >= {TARGET_PER_SECOND:,} tickets/s on one core ({shipped_rate:,.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
