#!/usr/bin/env python3
"""The demo's card population: the training week's 2,000 cards.

`driftline demo` draws its stationary traffic from the card population of
data/transactions.csv (what every bundled model's reference profile was
built from): each card's store features (data/cards.csv; the few cells left
null there on purpose get the column's median) and its legit transactions
in the training week, which become its daily rate (count / 7). A population
of its own (the generator's synthetic cards) would be another sample of
cards, with other typical amounts: amount is clustered by card, so a new
sample of 2,000 cards is a real shift of amount's distribution that the
monitor rightly flags.

    python3 scripts/make_demo_population.py   # writes src/demo/population.csv

Standard library only.
"""

import csv
import statistics
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NUMERIC = ["account_age_days", "credit_limit", "avg_amount_90d", "chargebacks_1y"]


def main() -> None:
    legit = Counter()
    with open(ROOT / "data/transactions.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["is_fraud"] == "0":
                legit[row["entity_id"]] += 1
    with open(ROOT / "data/cards.csv", newline="") as f:
        cards = list(csv.DictReader(f))
    medians = {
        c: statistics.median(float(r[c]) for r in cards if r[c] != "") for c in NUMERIC
    }
    out = ROOT / "src/demo/population.csv"
    with open(out, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["entity_id", "card_tier"] + NUMERIC + ["legit_events_week"])
        for r in cards:
            values = [r[c] if r[c] != "" else repr(medians[c]) for c in NUMERIC]
            w.writerow([r["entity_id"], r["card_tier"] or "standard"] + values + [legit[r["entity_id"]]])
    print(f"{out}: {len(cards)} cards, {sum(legit.values())} legit events in the week")


if __name__ == "__main__":
    main()
