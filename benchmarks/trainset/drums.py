"""General MIDI drum notes and one-bar patterns of the styles.

A pattern maps a drum note to a string with one character per step, the steps spread evenly over the bar (16
characters in 4/4 are 16th notes, 12 in 4/4 are triplet 8ths): 'X' accent, 'x' normal, 'o' ghost, '.' rest.
"""
from __future__ import annotations

import numpy as np

KICK, SIDE_STICK, SNARE, CLAP = 36, 37, 38, 39
CLOSED_HAT, PEDAL_HAT, OPEN_HAT = 42, 44, 46
LOW_TOM, MID_TOM, HIGH_TOM = 45, 47, 50
CRASH, RIDE, RIDE_BELL = 49, 51, 53
TAMBOURINE, COWBELL, SHAKER = 54, 56, 70
BONGO_HI, BONGO_LOW, CONGA_MUTE, CONGA_OPEN, CONGA_LOW = 60, 61, 62, 63, 64
TIMBALE_HI, CLAVES, WOODBLOCK = 65, 75, 76

VELOCITY = {"X": 118, "x": 92, "o": 48}
#: What a fill replaces in the second half of its bar.
FILL_REPLACES = {KICK, SNARE, CLAP, CLOSED_HAT, OPEN_HAT, RIDE}

BALLAD = {KICK: "x.......x.......", SIDE_STICK: "....x.......x...", CLOSED_HAT: "o.o.o.o.o.o.o.o."}
FOLK = {SHAKER: "xoxoxoxoxoxoxoxo", KICK: "x.......x.......", TAMBOURINE: "....x.......x..."}
POP = {KICK: "x.......x.x.....", SNARE: "....X.......X...", CLOSED_HAT: "x.x.x.x.x.x.x.x."}
ROCK = {KICK: "x.....x.x.......", SNARE: "....X.......X...", CLOSED_HAT: "x.x.x.x.x.x.x.x."}
# more rock grooves (--varied-texture): hats on the beats only, the ride in eighths, busy 16th hats
ROCK_QUARTER_HATS = {KICK: "x.......x.x.....", SNARE: "....X.......X...", CLOSED_HAT: "x...x...x...x..."}
ROCK_RIDE = {KICK: "x.....x.x.....x.", SNARE: "....X.......X...", RIDE: "x.x.x.x.x.x.x.x."}
ROCK_16 = {KICK: "x.....x...x.....", SNARE: "....X.......X...", CLOSED_HAT: "xoxoxoxoxoxoxoxo"}
PUNK = {KICK: "x.x...x.x.x.....", SNARE: "....X.......X...", CLOSED_HAT: "x.x.x.x.x.x.x.x."}
# the skank (polka) beat of punk and thrash: kick on every beat, snare on every off-beat eighth
SKANK = {KICK: "x...x...x...x...", SNARE: "..X...X...X...X.", CLOSED_HAT: "x.x.x.x.x.x.x.x."}
METAL = {KICK: "x.x.x.x.x.x.x.x.", SNARE: "....X.......X...", RIDE: "x...x...x...x..."}
METAL_GALLOP = {KICK: "x.xxx.xxx.xxx.xx", SNARE: "....X.......X...", CLOSED_HAT: "x...x...x...x..."}
# double kick drum in 16ths under a backbeat, the ride on the beats
METAL_DOUBLE_KICK = {KICK: "xxxxxxxxxxxxxxxx", SNARE: "....X.......X...", RIDE: "x...x...x...x..."}
WALTZ = {KICK: "x...........", CLOSED_HAT: "....x...x...", TAMBOURINE: "....o...o..."}
# 12 steps in 4/4: triplet 8ths, so the ride's "ding, ding-a, ding" is already swung
SWING = {RIDE: "x..x.xx..x.x", PEDAL_HAT: "...x.....x..", KICK: "o..o..o..o.."}
DNB = {KICK: "x.........x.....", SNARE: "....X.o.....X..o", CLOSED_HAT: "x.x.x.x.x.x.x.x."}
DNB_AMEN = {KICK: "x.x.......xx....", SNARE: "....X..o.o..X..o", RIDE: "x.x.x.x.x.x.x.x."}
# a roller: the two-step under a 16th shaker, ghost snares; and a straight stepper with the ride in 8ths
DNB_ROLLER = {KICK: "x.........x.....", SNARE: "....X..o.o..X...", SHAKER: "xoxoxoxoxoxoxoxo"}
DNB_STEPPER = {KICK: "x.....x...x.....", SNARE: "....X.......X..o", RIDE: "x.x.x.x.x.x.x.x.",
               PEDAL_HAT: "..x...x...x...x."}
HOUSE = {KICK: "X...X...X...X...", CLAP: "....x.......x...", OPEN_HAT: "..x...x...x...x.",
         CLOSED_HAT: "oooooooooooooooo"}
FUNK = {KICK: "x.....x...x..x..", SNARE: "....X..o.o..X..o", CLOSED_HAT: "XoxoXoxoXoxoXoxo"}
# dembow: kick on every beat, snare on the 4th and 7th 16th of each half bar ("boom-ch-boom-chick")
DEMBOW = {KICK: "x...x...x...x...", SNARE: "...x..x....x..x.", CLOSED_HAT: "x.x.x.x.x.x.x.x."}
BOOM_BAP = {KICK: "x.....x...x.....", SNARE: "....X.......X...", CLOSED_HAT: "x.x.x.x.x.x.x.x."}
HIPHOP_16 = {KICK: "x......xx.x.....", SNARE: "....X.......X...", CLOSED_HAT: "xoxoxoxoxoxoxoxo"}
# sparse hip-hop: no hats, a rim on the off-beats; and a shuffle with triplet hats (12 steps: triplet 8ths)
HIPHOP_SPARSE = {KICK: "x.......xx......", SNARE: "....X.......X...", SIDE_STICK: "..o...o...o...o."}
HIPHOP_SHUFFLE = {KICK: "x.....x.x...", SNARE: "...X.....X..", CLOSED_HAT: "x.xx.xx.xx.x"}
BOSSA = {SIDE_STICK: "x..x..x...x..x..", KICK: "x..xx...x..xx...", SHAKER: "xoxoxoxoxoxoxoxo"}
BOSSA_RIDE = {SIDE_STICK: "x..x..x...x..x..", KICK: "x..xx...x..xx...", RIDE: "x.x.x.x.x.x.x.x."}
SYNTHPOP = {KICK: "x...x...x...x...", CLAP: "....x.......x...", CLOSED_HAT: "xoxoxoxoxoxoxoxo"}
TRAP = {KICK: "x......x..x.....", CLAP: "....X.......X...", CLOSED_HAT: "xoxoxoxoxoxoxoxo"}


def sparse_loop(rng: np.random.Generator) -> dict[int, str]:
    """A sparse percussion loop: a kick on beat one (and sometimes three), a backbeat on a snare, clap or rim on
    some loops, and one or two hand-percussion voices on a few random 16ths, the rest silence."""
    kick = str(rng.choice(["x.......x.......", "x.....x.........", "x.........x.....", "x..............."]))
    pattern = {KICK: kick}
    if rng.random() < 0.75:
        pattern[int(rng.choice([SNARE, CLAP, SIDE_STICK]))] = "....x.......x..."
    voices = rng.choice([CONGA_MUTE, CONGA_OPEN, CONGA_LOW, BONGO_HI, BONGO_LOW, CLAVES, WOODBLOCK, COWBELL,
                         SHAKER, TIMBALE_HI, CLOSED_HAT], size=int(rng.integers(1, 3)), replace=False)
    for voice in voices:
        density = rng.uniform(0.15, 0.35)
        steps = ["x" if rng.random() < density else "." for _ in range(16)]
        for beat in (0, 8):  # keep the loop anchored to its beat
            if rng.random() < 0.5:
                steps[beat] = "x"
        pattern[int(voice)] = "".join(steps)
    return pattern
