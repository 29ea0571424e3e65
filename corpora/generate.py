"""Generate corpora/shipslog.txt: a ship's log written by a small grammar, for the demo and tests.

The text has what a character model can learn in a minute: a fixed entry layout, dates and
times that count up, a closed vocabulary of weather, sea and crew events, and sentences with
agreement between their parts. It is deterministic: `python corpora/generate.py` always writes
the same bytes (seeded), so the file can be regenerated and checked.

    python corpora/generate.py [OUTPUT] [--entries N]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

SHIP = "Meridian"
WINDS = ["north", "north-east", "east", "south-east", "south", "south-west", "west", "north-west"]
STRENGTH = ["calm", "a light breeze", "a moderate breeze", "a fresh breeze", "a strong breeze",
            "a near gale", "a gale", "a strong gale"]
SKY = ["clear", "fair", "overcast", "hazy", "grey with low cloud", "broken cloud", "stormy"]
SEA = ["smooth", "slight", "moderate", "rough", "very rough", "heavy"]
CREW = ["the captain", "the first mate", "the bosun", "the cook", "the carpenter", "young Tom",
        "the navigator", "the surgeon"]
TASKS = ["mended the mainsail", "tarred the rigging", "scrubbed the deck", "checked the pumps",
         "took a sounding", "shot the sun at noon", "stowed the cargo anew", "repaired the longboat",
         "caught three fish", "counted the water casks", "sang at the capstan"]
SIGHTS = ["a whale to starboard", "a sail on the horizon", "dolphins off the bow",
          "a flock of gulls", "driftwood and weed", "the lights of a town", "an iceberg far to the north",
          "a merchant brig flying no colours"]
PORTS = ["Lisbon", "Madeira", "the Azores", "Cape Verde", "Bahia", "Montevideo", "the Falklands"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]


def weather(rng: random.Random, level: int) -> str:
    wind = rng.choice(WINDS)
    strength = STRENGTH[level]
    sky = rng.choice(SKY[:3] if level < 3 else SKY[2:])
    sea = SEA[min(len(SEA) - 1, max(0, level - 1 + rng.randint(-1, 1)))]
    return f"Wind {wind}, {strength}. Sky {sky}. Sea {sea}."


def course(rng: random.Random) -> str:
    heading = rng.randrange(0, 360, 5)
    knots = rng.randint(2, 11)
    return f"Course {heading:03d} degrees, making {knots} knots."


def sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:]


def event(rng: random.Random) -> str:
    kind = rng.random()
    who = rng.choice(CREW)
    if kind < 0.45:
        return f"{sentence_case(who)} {rng.choice(TASKS)}."
    if kind < 0.75:
        return f"Sighted {rng.choice(SIGHTS)}."
    if kind < 0.9:
        return f"{sentence_case(who)} reports all well below decks."
    return f"{sentence_case(who)} is sick with fever and kept to the hammock."


def entry(rng: random.Random, day: int, level: int, port: str) -> str:
    month = MONTHS[(day // 30) % 12]
    lines = [f"{day % 30 + 1} {month}. The {SHIP}, bound for {port}."]
    for hour in sorted(rng.sample(range(0, 24, 2), rng.randint(2, 4))):
        lines.append(f"{hour:02d}00 hours. {weather(rng, level)} {course(rng)}")
        for _ in range(rng.randint(0, 2)):
            lines.append(event(rng))
    lines.append(f"Position by reckoning {rng.randint(0, 59)} degrees {rng.choice('NS')}, "
                 f"{rng.randint(0, 59)} degrees W. Signed, the captain.")
    return "\n".join(lines) + "\n\n"


def generate(entries: int, seed: int = 1805) -> str:
    rng = random.Random(seed)
    level, port_index, parts = 2, 0, []
    for day in range(entries):
        level = min(len(STRENGTH) - 1, max(0, level + rng.choice([-1, 0, 0, 1])))
        if rng.random() < 0.05:
            port_index = (port_index + 1) % len(PORTS)
            parts.append(f"Made port at {PORTS[port_index - 1] if port_index else PORTS[-1]}. "
                         f"Took on water and salt pork. Set sail again for {PORTS[port_index]}.\n\n")
        parts.append(entry(rng, day, level, PORTS[port_index]))
    return "".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", default=str(Path(__file__).with_name("shipslog.txt")))
    parser.add_argument("--entries", type=int, default=600)
    args = parser.parse_args()
    Path(args.output).write_text(generate(args.entries), encoding="utf-8")


if __name__ == "__main__":
    main()
