"""The handler of the `crmscript` scenario: a typical webhook handler written in CRMScript,
the same logic as a plain Python function, and the events both are run on.

The handler reads the webhook variables hookcast gives a `crmscript` webhook (crmscript.md
§15: Event, PrimaryKey, Changes.<field>, ...), normalises a few changed fields, scores the
contact's tags through a Map, and prints one compact JSON document built with JSONBuilder.
No HTTP: the figures are the interpreter's own cost.
"""

from __future__ import annotations

import json
from typing import Any

# 37 lines; 33-48 statements run per event.
SCRIPT = """\
#setLanguageLevel 3;
String event = getVariable("Event");
Integer id = getVariable("PrimaryKey").toInteger();
String name = getVariable("Changes.name").stripLeadingAndTrailing(" ");
String email = getVariable("Changes.email").toLower();
String phone = getVariable("Changes.phone");
String category = getVariable("Changes.category");
String[] tags = getVariable("Changes.tags").split(",");
String kind;
if (event == "contact.created") kind = "new";
else if (event == "contact.changed") kind = "update";
else if (event == "contact.deleted") kind = "removed";
else kind = "other";
Map weights;
weights.insert("vip", "10");
weights.insert("partner", "5");
weights.insert("lead", "2");
JSONBuilder jb;
jb.pushObject("");
jb.addString("kind", kind);
jb.addInteger("id", id);
jb.addString("name", name.toUpper());
jb.addString("domain", email.after("@"));
jb.addString("phone", phone.substitute(" ", "").substitute("-", ""));
Integer score = 0;
jb.pushArray("tags");
foreach (String t in tags) {
  String tag = t.stripLeadingAndTrailing(" ").toLower();
  if (tag.isEmpty()) continue;
  jb.addString("", tag);
  if (weights.exists(tag)) score += weights.get(tag).toInteger();
}
jb.popLevel();
jb.addInteger("score", score);
jb.addBoolean("priority", score >= 10 || category == "Key account");
jb.finalize();
printLine(jb.getString());
"""

WEIGHTS = {"vip": 10, "partner": 5, "lead": 2}


def handler(variables: dict[str, str]) -> str:
    """The same logic in plain Python (stdlib json); returns what the script prints."""
    get = variables.get
    event = get("Event", "")
    id_text = get("PrimaryKey", "").strip()
    id_ = int(id_text) if id_text.isdigit() else 0
    name = get("Changes.name", "").strip(" ")
    email = get("Changes.email", "").lower()
    phone = get("Changes.phone", "")
    category = get("Changes.category", "")
    tags = get("Changes.tags", "").split(",")
    if event == "contact.created":
        kind = "new"
    elif event == "contact.changed":
        kind = "update"
    elif event == "contact.deleted":
        kind = "removed"
    else:
        kind = "other"
    _, at, domain = email.partition("@")
    score = 0
    kept = []
    for t in tags:
        tag = t.strip(" ").lower()
        if not tag:
            continue
        kept.append(tag)
        score += WEIGHTS.get(tag, 0)
    doc: dict[str, Any] = {
        "kind": kind,
        "id": id_,
        "name": name.upper(),
        "domain": domain if at else "",
        "phone": phone.replace(" ", "").replace("-", ""),
        "tags": kept,
        "score": score,
        "priority": score >= 10 or category == "Key account",
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n"


def _event(event: str, pk: int, **changes: str) -> dict[str, str]:
    variables = {
        "PrimaryKey": str(pk),
        "Event": event,
        "Entity": event.split(".")[0],
        "EventId": "6f1c2f3e-4b7a-4c1d-9a51-2b8f0e4d7c10",
        "Timestamp": "2026-11-27T01:51:07Z",
        "ChangedByAssociateId": "316",
        "ContextIdentifier": "Cust1234",
    }
    variables.update({f"Changes.{k}": v for k, v in changes.items()})
    return variables


# Events like the ones a CRM sends: every branch of the if/else chain, tags with blanks and
# empty entries, an e-mail without '@', non-ASCII text.
EVENTS = [
    _event(
        "contact.changed",
        994863,
        name="  Ada Lovelace ",
        email="Ada@Example.COM",
        phone="+47 22-33 44 55",
        category="Key account",
        tags="VIP, lead ,,partner",
    ),
    _event(
        "contact.created",
        17,
        name="Bjørn Ørsted",
        email="bjorn@example.no",
        phone="915 55 555",
        category="Customer",
        tags="lead",
    ),
    _event("contact.deleted", 4242, name="Old Co", email="noreply", phone="", category="", tags=""),
    _event(
        "sale.changed",
        81,
        name="Q4 deal",
        email="sales@example.com",
        phone="22-00-00-00",
        category="Prospect",
        tags="partner,partner, trial",
    ),
]
